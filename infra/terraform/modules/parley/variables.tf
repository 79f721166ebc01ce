variable "release_name" {
  description = "Helm release name; every object is named after it."
  type        = string
  default     = "parley"
}

variable "namespace" {
  description = "Kubernetes namespace of the release."
  type        = string
  default     = "parley"
}

variable "create_namespace" {
  description = "Create the namespace if it does not exist."
  type        = bool
  default     = true
}

variable "chart_path" {
  description = "The Parley chart; the copy beside this module by default."
  type        = string
  default     = null
}

variable "image_repository" {
  description = "Parley's image, built from the Dockerfile at the repository root."
  type        = string
  default     = "parley"
}

variable "image_tag" {
  description = "Image tag; the chart's appVersion when empty."
  type        = string
  default     = ""
}

variable "jwt_secret" {
  description = "HS256 secret for session tokens, 32 bytes or more, the same for every role."
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.jwt_secret) >= 32
    error_message = "jwt_secret must be at least 32 bytes."
  }
}

variable "kafka_brokers" {
  description = "Kafka bootstrap servers, comma-separated host:port."
  type        = string
}

variable "kafka_security_protocol" {
  description = "plaintext, ssl, sasl_plaintext or sasl_ssl."
  type        = string
  default     = "sasl_ssl"
  validation {
    condition     = contains(["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"], var.kafka_security_protocol)
    error_message = "kafka_security_protocol must be plaintext, ssl, sasl_plaintext or sasl_ssl."
  }
}

variable "kafka_sasl_mechanism" {
  description = "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
  type        = string
  default     = "SCRAM-SHA-512"
  validation {
    condition     = contains(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], var.kafka_sasl_mechanism)
    error_message = "kafka_sasl_mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
  }
}

variable "kafka_sasl_username" {
  description = "SASL user (with sasl_plaintext or sasl_ssl)."
  type        = string
  default     = ""
}

variable "kafka_sasl_password" {
  description = "SASL password (with sasl_plaintext or sasl_ssl)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "kafka_ca_secret" {
  description = "Name of a Secret (key ca.crt) with the CA of the brokers' certificates; the image's trust store when empty."
  type        = string
  default     = ""
}

variable "kafka_config" {
  description = "librdkafka properties for every Kafka client, name = value."
  type        = map(string)
  default     = {}
}

variable "kafka_replication" {
  description = "Replicas of the topic when Parley creates it (min.insync.replicas is 2 above 1)."
  type        = number
  default     = 3
}

variable "kafka_partitions" {
  description = "Partitions of the topic when Parley creates it."
  type        = number
  default     = 24
}

variable "scylla_nodes" {
  description = "ScyllaDB contact points, comma-separated host:port."
  type        = string
}

variable "scylla_keyspace" {
  description = "Keyspace of the read models and credentials."
  type        = string
  default     = "parley"
}

variable "scylla_replication" {
  description = "Replication factor of the keyspace when Parley creates it."
  type        = number
  default     = 3
}

variable "scylla_tls" {
  description = "Connect to ScyllaDB over TLS."
  type        = bool
  default     = true
}

variable "scylla_ca_secret" {
  description = "Name of a Secret (key ca.crt) with the CA of the nodes' certificates; the image's trust store when empty."
  type        = string
  default     = ""
}

variable "scylla_username" {
  description = "CQL user; no password login when empty."
  type        = string
  default     = ""
}

variable "scylla_password" {
  description = "CQL password."
  type        = string
  default     = ""
  sensitive   = true
}

variable "replicas" {
  description = "Pods per role."
  type = object({
    command_api = number
    query_api   = number
    projector   = number
    ws_push     = number
  })
  default = {
    command_api = 3
    query_api   = 3
    projector   = 2
    ws_push     = 4
  }
}

variable "ingress_enabled" {
  description = "Create the Ingress (routes need regex paths: ingress-nginx)."
  type        = bool
  default     = true
}

variable "ingress_host" {
  description = "Host name the Ingress answers; every host when empty."
  type        = string
  default     = ""
}

variable "service_monitor_enabled" {
  description = "Create a Prometheus Operator ServiceMonitor."
  type        = bool
  default     = false
}

variable "extra_values" {
  description = "More chart values, as YAML, applied last."
  type        = string
  default     = ""
}
