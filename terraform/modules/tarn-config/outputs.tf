output "toml" {
  description = "The rendered tarn.toml."
  value       = local.toml
}
