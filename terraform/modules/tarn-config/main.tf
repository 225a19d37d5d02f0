# Renders one instance's tarn.toml from tarn.toml.tftpl: the same template serves both clouds.
locals {
  toml = templatefile("${path.module}/tarn.toml.tftpl", {
    instance_name     = var.instance_name
    listen            = var.listen
    mysql_listen      = var.mysql_listen
    flight_listen     = var.flight_listen
    data_dir          = var.data_dir
    memory_limit      = var.memory_limit
    home_region       = var.home_region
    allowed_locations = var.allowed_locations
    snapshot_location = var.snapshot_location
    tls_cert          = var.tls_cert
    tls_key           = var.tls_key
    regions           = var.regions
    replicas          = var.replicas
    probe_interval    = var.probe_interval
    failure_threshold = var.failure_threshold
    failback_after    = var.failback_after
  })
}
