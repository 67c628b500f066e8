output "ipv4_address" {
  description = "where DOMAIN's A record points: the reserved IP when there is one"
  value       = local.address
}

output "ssh" {
  description = "how to log in"
  value       = "ssh ${var.admin_user}@${local.address}"
}
