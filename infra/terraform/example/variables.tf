variable "kubeconfig" {
  description = "Path of the kubeconfig of the target cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "Context of that kubeconfig; its current context when empty."
  type        = string
  default     = ""
}

variable "jwt_secret" {
  description = "HS256 secret for session tokens, 32 bytes or more."
  type        = string
  sensitive   = true
}

variable "kafka_brokers" {
  description = "Kafka bootstrap servers, comma-separated host:port."
  type        = string
}

variable "kafka_sasl_username" {
  description = "SASL/SCRAM user."
  type        = string
}

variable "kafka_sasl_password" {
  description = "SASL/SCRAM password."
  type        = string
  sensitive   = true
}

variable "scylla_nodes" {
  description = "ScyllaDB contact points, comma-separated host:port."
  type        = string
}

variable "scylla_username" {
  description = "CQL user."
  type        = string
}

variable "scylla_password" {
  description = "CQL password."
  type        = string
  sensitive   = true
}

variable "image_repository" {
  description = "Where the cluster pulls Parley's image from."
  type        = string
  default     = "parley"
}
