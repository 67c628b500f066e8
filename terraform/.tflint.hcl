# tflint's bundled Terraform rules, all of them; no plugin is downloaded.
config {
  call_module_type = "none"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
