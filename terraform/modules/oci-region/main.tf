# One region's Tarn on OCI: a VCN whose instance subnet has no public addresses (Object Storage,
# Vault and the OS repositories through a service gateway), a compute instance whose data
# directory is an encrypted block volume, and a network load balancer in front of its three
# doors, each backend checked with GET /readyz.

data "oci_identity_availability_domains" "here" {
  compartment_id = var.compartment_ocid
}

data "oci_core_services" "all" {
  filter {
    name   = "name"
    values = ["All .* Services In Oracle Services Network"]
    regex  = true
  }
}

data "oci_core_images" "ol9" {
  compartment_id           = var.compartment_ocid
  operating_system         = "Oracle Linux"
  operating_system_version = "9"
  shape                    = var.shape
  sort_by                  = "TIMECREATED"
  sort_order               = "DESC"
}

locals {
  ad = data.oci_identity_availability_domains.here.availability_domains[0].name
  doors = {
    http   = { port = 8080, listen = local.tls ? 443 : 80 }
    mysql  = { port = 3306, listen = 3306 }
    flight = { port = 50051, listen = 50051 }
  }
  # 75% of the shape's memory, as Tarn's own default would take.
  memory_limit = "${floor(var.memory_gbs * 1024 * 3 / 4)}MiB"
  tls          = var.tls_secrets != null
  tls_dir      = "/etc/tarn/tls"
}

module "config" {
  source            = "../tarn-config"
  instance_name     = var.name
  memory_limit      = local.memory_limit
  home_region       = var.region
  allowed_locations = var.tarn.allowed_locations
  snapshot_location = "oci://${var.own_bucket}@${var.namespace}/tarn-snapshots/${var.name}/"
  tls_cert          = local.tls ? "${local.tls_dir}/cert.pem" : ""
  tls_key           = local.tls ? "${local.tls_dir}/key.pem" : ""
  regions           = var.tarn.regions
  replicas          = var.tarn.replicas
}

resource "oci_core_vcn" "tarn" {
  compartment_id = var.compartment_ocid
  cidr_blocks    = [var.vcn_cidr]
  display_name   = var.name
  dns_label      = "tarn"
}

# The default security list admits nothing: the network security groups below say who may connect.
resource "oci_core_default_security_list" "closed" {
  manage_default_resource_id = oci_core_vcn.tarn.default_security_list_id
}

resource "oci_core_internet_gateway" "tarn" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.tarn.id
  display_name   = "${var.name}-internet"
}

resource "oci_core_service_gateway" "tarn" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.tarn.id
  display_name   = "${var.name}-services"
  services {
    service_id = data.oci_core_services.all.services[0].id
  }
}

resource "oci_core_route_table" "public" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.tarn.id
  display_name   = "${var.name}-public"
  route_rules {
    destination       = "0.0.0.0/0"
    network_entity_id = oci_core_internet_gateway.tarn.id
  }
}

resource "oci_core_route_table" "private" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.tarn.id
  display_name   = "${var.name}-private"
  route_rules {
    destination       = data.oci_core_services.all.services[0].cidr_block
    destination_type  = "SERVICE_CIDR_BLOCK"
    network_entity_id = oci_core_service_gateway.tarn.id
  }
}

resource "oci_core_subnet" "public" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.tarn.id
  cidr_block     = cidrsubnet(var.vcn_cidr, 8, 0)
  display_name   = "${var.name}-public"
  route_table_id = oci_core_route_table.public.id
  dns_label      = "pub"
}

resource "oci_core_subnet" "private" {
  compartment_id             = var.compartment_ocid
  vcn_id                     = oci_core_vcn.tarn.id
  cidr_block                 = cidrsubnet(var.vcn_cidr, 8, 10)
  display_name               = "${var.name}-private"
  route_table_id             = oci_core_route_table.private.id
  prohibit_public_ip_on_vnic = true
  dns_label                  = "priv"
}

resource "oci_core_network_security_group" "lb" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.tarn.id
  display_name   = "${var.name}-lb"
}

resource "oci_core_network_security_group_security_rule" "lb_in" {
  #checkov:skip=CKV_OCI_21:stateful on purpose: replies need no egress rule, where stateless rules would have to open the reverse direction
  for_each                  = { for p in setproduct(keys(local.doors), var.allowed_cidrs) : "${p[0]}-${p[1]}" => { door = p[0], cidr = p[1] } }
  network_security_group_id = oci_core_network_security_group.lb.id
  direction                 = "INGRESS"
  protocol                  = "6"
  source                    = each.value.cidr
  source_type               = "CIDR_BLOCK"
  description               = "Tarn ${each.value.door} from allowed clients"
  tcp_options {
    destination_port_range {
      min = local.doors[each.value.door].listen
      max = local.doors[each.value.door].listen
    }
  }
}

resource "oci_core_network_security_group_security_rule" "lb_out" {
  for_each                  = local.doors
  network_security_group_id = oci_core_network_security_group.lb.id
  direction                 = "EGRESS"
  protocol                  = "6"
  destination               = oci_core_network_security_group.instance.id
  destination_type          = "NETWORK_SECURITY_GROUP"
  description               = "To the instance's ${each.key} door"
  tcp_options {
    destination_port_range {
      min = each.value.port
      max = each.value.port
    }
  }
}

resource "oci_core_network_security_group" "instance" {
  compartment_id = var.compartment_ocid
  vcn_id         = oci_core_vcn.tarn.id
  display_name   = "${var.name}-instance"
}

resource "oci_core_network_security_group_security_rule" "instance_in" {
  #checkov:skip=CKV_OCI_21:stateful on purpose: replies need no egress rule, where stateless rules would have to open the reverse direction
  for_each                  = local.doors
  network_security_group_id = oci_core_network_security_group.instance.id
  direction                 = "INGRESS"
  protocol                  = "6"
  source                    = oci_core_network_security_group.lb.id
  source_type               = "NETWORK_SECURITY_GROUP"
  description               = "Tarn ${each.key} from the load balancer"
  tcp_options {
    destination_port_range {
      min = each.value.port
      max = each.value.port
    }
  }
}

resource "oci_core_network_security_group_security_rule" "instance_out" {
  network_security_group_id = oci_core_network_security_group.instance.id
  direction                 = "EGRESS"
  protocol                  = "6"
  destination               = data.oci_core_services.all.services[0].cidr_block
  destination_type          = "SERVICE_CIDR_BLOCK"
  description               = "Object Storage, Vault and the OS repositories (HTTPS) through the service gateway"
  tcp_options {
    destination_port_range {
      min = 443
      max = 443
    }
  }
}

resource "oci_core_instance" "tarn" {
  compartment_id      = var.compartment_ocid
  availability_domain = local.ad
  display_name        = var.name
  shape               = var.shape
  shape_config {
    ocpus         = var.ocpus
    memory_in_gbs = var.memory_gbs
  }
  source_details {
    source_type = "image"
    source_id   = data.oci_core_images.ol9.images[0].id
    kms_key_id  = var.kms_key_id
  }
  create_vnic_details {
    subnet_id        = oci_core_subnet.private.id
    assign_public_ip = false
    nsg_ids          = [oci_core_network_security_group.instance.id]
  }
  is_pv_encryption_in_transit_enabled = true
  launch_options {
    is_pv_encryption_in_transit_enabled = true
  }
  instance_options {
    are_legacy_imds_endpoints_disabled = true
  }
  metadata = {
    user_data = base64gzip(templatefile("${path.module}/cloud-init.yaml.tftpl", {
      tarn_toml             = module.config.toml
      binary_url            = var.binary_url
      admin_token_secret_id = var.admin_token_secret_id
      s3_key_secret_id      = var.s3_key_secret_id
      tls_cert_secret       = local.tls ? var.tls_secrets.cert : ""
      tls_key_secret        = local.tls ? var.tls_secrets.key : ""
      tls_dir               = local.tls_dir
      data_device           = "/dev/oracleoci/oraclevdb"
    }))
  }
}

resource "oci_core_volume" "data" {
  compartment_id      = var.compartment_ocid
  availability_domain = local.ad
  display_name        = "${var.name}-data"
  size_in_gbs         = var.data_volume_gb
  kms_key_id          = var.kms_key_id
  # Oracle's "silver" policy: weekly incremental backups (the catalog and tokens live here).
  backup_policy_id = data.oci_core_volume_backup_policies.silver.volume_backup_policies[0].id
}

data "oci_core_volume_backup_policies" "silver" {
  filter {
    name   = "display_name"
    values = ["silver"]
  }
}

resource "oci_core_volume_attachment" "data" {
  attachment_type                     = "paravirtualized"
  instance_id                         = oci_core_instance.tarn.id
  volume_id                           = oci_core_volume.data.id
  device                              = "/dev/oracleoci/oraclevdb"
  is_pv_encryption_in_transit_enabled = true
}

resource "oci_network_load_balancer_network_load_balancer" "tarn" {
  compartment_id                 = var.compartment_ocid
  display_name                   = var.name
  subnet_id                      = oci_core_subnet.public.id
  is_private                     = false
  network_security_group_ids     = [oci_core_network_security_group.lb.id]
  is_preserve_source_destination = false
}

resource "oci_network_load_balancer_backend_set" "door" {
  for_each                 = local.doors
  network_load_balancer_id = oci_network_load_balancer_network_load_balancer.tarn.id
  name                     = each.key
  policy                   = "FIVE_TUPLE"
  # Every door is in service only while Tarn answers GET /readyz (recovered and ready).
  health_checker {
    protocol           = local.tls ? "HTTPS" : "HTTP"
    port               = 8080
    url_path           = "/readyz"
    return_code        = 200
    interval_in_millis = 10000
    retries            = 3
  }
}

resource "oci_network_load_balancer_backend" "door" {
  for_each                 = local.doors
  network_load_balancer_id = oci_network_load_balancer_network_load_balancer.tarn.id
  backend_set_name         = oci_network_load_balancer_backend_set.door[each.key].name
  target_id                = oci_core_instance.tarn.id
  port                     = each.value.port
}

resource "oci_network_load_balancer_listener" "door" {
  for_each                 = local.doors
  network_load_balancer_id = oci_network_load_balancer_network_load_balancer.tarn.id
  name                     = each.key
  default_backend_set_name = oci_network_load_balancer_backend_set.door[each.key].name
  port                     = each.value.listen
  protocol                 = "TCP"
}
