variable "do_token" {
  description = "DigitalOcean API token; set TF_VAR_do_token in the environment, never in a file"
  type        = string
  sensitive   = true
}

variable "admin_ssh_public_key" {
  description = "the admin's SSH public key (the contents of ~/.ssh/id_ed25519.pub), for the admin user"
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|sk-ssh-ed25519@openssh.com) ", var.admin_ssh_public_key))
    error_message = "admin_ssh_public_key must be an OpenSSH public key line (ssh-ed25519 AAAA... you@host)."
  }
}

variable "admin_user" {
  description = "the login made on the droplet, with sudo and the admin's key"
  type        = string
  default     = "tuta"
}

variable "ssh_allowed_from" {
  description = "the admins' addresses SSH is open to (CIDR, such as 203.0.113.7/32); no default: open to all only as an explicit [\"0.0.0.0/0\", \"::/0\"]"
  type        = list(string)

  validation {
    condition     = length(var.ssh_allowed_from) > 0 && alltrue([for c in var.ssh_allowed_from : can(cidrhost(c, 0))])
    error_message = "ssh_allowed_from must list the admins' addresses as CIDR (203.0.113.7/32, 2001:db8::/64); [\"0.0.0.0/0\", \"::/0\"] opens SSH to all."
  }
}

variable "domain" {
  description = "the name Zoom posts webhooks to; its A record points at the droplet (or the reserved IP)"
  type        = string
}

variable "region" {
  description = "DigitalOcean region slug"
  type        = string
  default     = "fra1"
}

variable "size" {
  description = "droplet size slug; 512 MB holds the stack, which peaked at 252 MiB, page cache included, through an unthrottled 2 GiB archive (docs/measurements.md); s-1vcpu-1gb for room to spare"
  type        = string
  default     = "s-1vcpu-512mb-10gb"
}

variable "image" {
  description = "droplet image slug: Debian 13, whose docker.io and docker-compose packages give Docker with compose v2"
  type        = string
  default     = "debian-13-x64"
}

variable "reserved_ip" {
  description = "give the droplet a reserved IP, which stays when the droplet is rebuilt"
  type        = bool
  default     = false
}
