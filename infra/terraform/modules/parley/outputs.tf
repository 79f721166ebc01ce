output "release_name" {
  description = "The Helm release."
  value       = helm_release.parley.name
}

output "namespace" {
  description = "Where Parley runs."
  value       = helm_release.parley.namespace
}

output "status" {
  description = "The release's status (deployed once every role is ready)."
  value       = helm_release.parley.status
}
