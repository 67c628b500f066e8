# One droplet running the compose stack, behind a cloud firewall that lets in only
# SSH, HTTP (ACME challenges, redirects) and HTTPS (Zoom's webhooks).

locals {
  # The compose project cloud-init lays down in /opt/zoomarchive; the images and
  # the secrets come later (docs/install.md).
  project_files = [
    "compose.yaml",
    "nats/nats.conf",
    "nginx/Containerfile",
    "nginx/nginx.conf",
    "nginx/entrypoint.sh",
    "deploy/certbot/Containerfile",
    "deploy/certbot/entrypoint.sh",
    "deploy/production.env.example",
    "deploy/check",
  ]
  address = var.reserved_ip ? digitalocean_reserved_ip.archive[0].ip_address : digitalocean_droplet.archive.ipv4_address
}

resource "digitalocean_ssh_key" "admin" {
  name       = "zoomarchive-admin"
  public_key = var.admin_ssh_public_key
}

resource "digitalocean_droplet" "archive" {
  name       = "zoomarchive"
  image      = var.image
  region     = var.region
  size       = var.size
  ssh_keys   = [digitalocean_ssh_key.admin.fingerprint]
  monitoring = true
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    admin_user           = var.admin_user
    admin_ssh_public_key = var.admin_ssh_public_key
    domain               = var.domain
    files                = { for f in local.project_files : f => filebase64("${path.module}/../${f}") }
    logrotate            = filebase64("${path.module}/../deploy/logrotate/zoomarchive")
  })

  # cloud-init runs at the first boot only. A later change of the files above
  # must not replace the droplet (and its JetStream data): copy them instead
  # (docs/install.md).
  lifecycle {
    ignore_changes = [user_data]
  }
}

resource "digitalocean_firewall" "archive" {
  name        = "zoomarchive"
  droplet_ids = [digitalocean_droplet.archive.id]

  inbound_rule {
    protocol         = "tcp"
    port_range       = "22"
    source_addresses = var.ssh_allowed_from
  }

  inbound_rule {
    protocol         = "tcp"
    port_range       = "80"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  inbound_rule {
    protocol         = "tcp"
    port_range       = "443"
    source_addresses = ["0.0.0.0/0", "::/0"]
  }

  # Out: Zoom, Google, Let's Encrypt, the package mirrors, DNS and NTP.
  outbound_rule {
    protocol              = "tcp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "udp"
    port_range            = "1-65535"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }

  outbound_rule {
    protocol              = "icmp"
    destination_addresses = ["0.0.0.0/0", "::/0"]
  }
}

resource "digitalocean_reserved_ip" "archive" {
  count  = var.reserved_ip ? 1 : 0
  region = var.region
}

resource "digitalocean_reserved_ip_assignment" "archive" {
  count      = var.reserved_ip ? 1 : 0
  ip_address = digitalocean_reserved_ip.archive[0].ip_address
  droplet_id = digitalocean_droplet.archive.id
}
