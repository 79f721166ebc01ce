terraform {
  required_version = ">= 1.6.0"
  required_providers {
    # The module uses the provider's 1.x/2.x syntax (set blocks, a
    # kubernetes block); 3.x changed both.
    helm = {
      source  = "hashicorp/helm"
      version = ">= 1.3.2, < 3.0.0"
    }
  }
}
