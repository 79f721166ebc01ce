# Parley's Helm chart on a Kubernetes cluster, against an external Kafka and
# ScyllaDB. Passwords go through set_sensitive, never into the values shown
# in a plan.
locals {
  sasl = startswith(var.kafka_security_protocol, "sasl")
  values = {
    image = {
      repository = var.image_repository
      tag        = var.image_tag
    }
    kafka = {
      brokers          = var.kafka_brokers
      replication      = var.kafka_replication
      partitions       = var.kafka_partitions
      securityProtocol = var.kafka_security_protocol
      sasl = {
        mechanism = var.kafka_sasl_mechanism
        username  = var.kafka_sasl_username
      }
      tls    = { caSecret = var.kafka_ca_secret }
      config = var.kafka_config
    }
    scylla = {
      nodes       = var.scylla_nodes
      keyspace    = var.scylla_keyspace
      replication = var.scylla_replication
      tls = {
        enabled  = var.scylla_tls
        caSecret = var.scylla_ca_secret
      }
      auth = { username = var.scylla_username }
    }
    roles = {
      commandApi = { replicas = var.replicas.command_api }
      queryApi   = { replicas = var.replicas.query_api }
      projector  = { replicas = var.replicas.projector }
      wsPush     = { replicas = var.replicas.ws_push }
    }
    podDisruptionBudget = {
      wsPush = { minAvailable = max(1, var.replicas.ws_push - 1) }
    }
    ingress = {
      enabled = var.ingress_enabled
      host    = var.ingress_host
    }
    serviceMonitor = { enabled = var.service_monitor_enabled }
  }
}

resource "helm_release" "parley" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = var.create_namespace
  chart            = coalesce(var.chart_path, "${path.module}/../../../helm/parley")
  # The migrate Job runs as a pre-install/pre-upgrade hook; wait for it and
  # for every role to be ready, and roll back a release that does not get there.
  wait    = true
  atomic  = true
  timeout = 900

  values = compact([yamlencode(local.values), var.extra_values])

  set_sensitive {
    name  = "jwt.secret"
    value = var.jwt_secret
  }

  dynamic "set_sensitive" {
    for_each = local.sasl ? [var.kafka_sasl_password] : []
    content {
      name  = "kafka.sasl.password"
      value = set_sensitive.value
    }
  }

  dynamic "set_sensitive" {
    for_each = var.scylla_username != "" ? [var.scylla_password] : []
    content {
      name  = "scylla.auth.password"
      value = set_sensitive.value
    }
  }
}
