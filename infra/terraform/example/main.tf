# An example root module: Parley on the cluster of a kubeconfig, against a
# managed Kafka (SASL_SSL, SCRAM-SHA-512) and ScyllaDB (TLS, password).
#
#   cp terraform.tfvars.example terraform.tfvars   # then fill it in
#   tofu init && tofu apply
provider "helm" {
  kubernetes {
    config_path    = pathexpand(var.kubeconfig)
    config_context = var.kube_context != "" ? var.kube_context : null
  }
}

module "parley" {
  source = "../modules/parley"

  image_repository = var.image_repository
  jwt_secret       = var.jwt_secret

  kafka_brokers           = var.kafka_brokers
  kafka_security_protocol = "sasl_ssl"
  kafka_sasl_mechanism    = "SCRAM-SHA-512"
  kafka_sasl_username     = var.kafka_sasl_username
  kafka_sasl_password     = var.kafka_sasl_password

  scylla_nodes    = var.scylla_nodes
  scylla_tls      = true
  scylla_username = var.scylla_username
  scylla_password = var.scylla_password
}

output "namespace" {
  value = module.parley.namespace
}

output "status" {
  value = module.parley.status
}
