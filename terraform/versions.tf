terraform {
  required_version = ">= 1.5"

  required_providers {
    digitalocean = {
      source  = "digitalocean/digitalocean"
      version = "~> 2.40"
    }
  }
}

# The token comes only from the environment: TF_VAR_do_token.
provider "digitalocean" {
  token = var.do_token
}
