# Active/active Tarn in two OCI regions. Each region has the bucket it writes to and a replica of
# the other region's: a replication policy is one-way and makes its destination read-only, so
# there are two, in opposite directions. A Tarn instance per region reads its own region's copy of
# each bucket and fails over to the other's; secrets live in each region's Vault.

data "oci_objectstorage_namespace" "ns" {
  provider       = oci.a
  compartment_id = var.tenancy_ocid
}

locals {
  ns         = data.oci_objectstorage_namespace.ns.namespace
  a          = var.regions[0]
  b          = var.regions[1]
  own        = { a = "${var.name}-lake-${local.a}", b = "${var.name}-lake-${local.b}" }
  replica    = { a = "${var.name}-lake-${local.b}-replica", b = "${var.name}-lake-${local.a}-replica" }
  binary_key = "releases/tarn-${filemd5(var.tarn_binary)}"
  location   = { for k, v in merge({ for k, v in local.own : "own_${k}" => v }, { for k, v in local.replica : "replica_${k}" => v }) : k => "oci://${v}@${local.ns}/" }
  tarn = {
    regions = {
      (local.a) = { endpoint = "https://${local.ns}.compat.objectstorage.${local.a}.oraclecloud.com" }
      (local.b) = { endpoint = "https://${local.ns}.compat.objectstorage.${local.b}.oraclecloud.com" }
    }
    replicas = [
      # Region a's bucket, and its copy in region b.
      {
        primary_region = local.a, primary_location = local.location.own_a
        replica_region = local.b, replica_location = local.location.replica_b
      },
      # Region b's bucket, and its copy in region a.
      {
        primary_region = local.b, primary_location = local.location.own_b
        replica_region = local.a, replica_location = local.location.replica_a
      },
    ]
    allowed_locations = values(local.location)
  }
}

# ---- Vault: a key per region for buckets, volumes and secrets ----

resource "oci_kms_vault" "a" {
  provider       = oci.a
  compartment_id = var.compartment_ocid
  display_name   = "${var.name}-${local.a}"
  vault_type     = "DEFAULT"
}

resource "oci_kms_vault" "b" {
  provider       = oci.b
  compartment_id = var.compartment_ocid
  display_name   = "${var.name}-${local.b}"
  vault_type     = "DEFAULT"
}

resource "oci_kms_key" "a" {
  provider            = oci.a
  compartment_id      = var.compartment_ocid
  display_name        = "${var.name}-${local.a}"
  management_endpoint = oci_kms_vault.a.management_endpoint
  protection_mode     = "HSM"
  key_shape {
    algorithm = "AES"
    length    = 32
  }
}

resource "oci_kms_key" "b" {
  provider            = oci.b
  compartment_id      = var.compartment_ocid
  display_name        = "${var.name}-${local.b}"
  management_endpoint = oci_kms_vault.b.management_endpoint
  protection_mode     = "HSM"
  key_shape {
    algorithm = "AES"
    length    = 32
  }
}

# ---- buckets: each region's own (versioned), and the replica of the other's ----

resource "oci_objectstorage_bucket" "own_a" {
  provider              = oci.a
  compartment_id        = var.compartment_ocid
  namespace             = local.ns
  name                  = local.own.a
  access_type           = "NoPublicAccess"
  versioning            = "Enabled"
  kms_key_id            = oci_kms_key.a.id
  object_events_enabled = true
  depends_on            = [oci_identity_policy.object_storage]
}

resource "oci_objectstorage_bucket" "own_b" {
  provider              = oci.b
  compartment_id        = var.compartment_ocid
  namespace             = local.ns
  name                  = local.own.b
  access_type           = "NoPublicAccess"
  versioning            = "Enabled"
  kms_key_id            = oci_kms_key.b.id
  object_events_enabled = true
  depends_on            = [oci_identity_policy.object_storage]
}

# A replication destination is written only by replication; versioning stays off on it.
resource "oci_objectstorage_bucket" "replica_a" {
  #checkov:skip=CKV_OCI_8:a replication destination cannot be versioned; its source is
  provider              = oci.a
  compartment_id        = var.compartment_ocid
  namespace             = local.ns
  name                  = local.replica.a
  access_type           = "NoPublicAccess"
  versioning            = "Disabled"
  kms_key_id            = oci_kms_key.a.id
  object_events_enabled = true
  depends_on            = [oci_identity_policy.object_storage]
}

resource "oci_objectstorage_bucket" "replica_b" {
  #checkov:skip=CKV_OCI_8:a replication destination cannot be versioned; its source is
  provider              = oci.b
  compartment_id        = var.compartment_ocid
  namespace             = local.ns
  name                  = local.replica.b
  access_type           = "NoPublicAccess"
  versioning            = "Disabled"
  kms_key_id            = oci_kms_key.b.id
  object_events_enabled = true
  depends_on            = [oci_identity_policy.object_storage]
}

resource "oci_objectstorage_replication_policy" "a_to_b" {
  provider                = oci.a
  depends_on              = [oci_objectstorage_bucket.own_a, oci_objectstorage_bucket.replica_b, oci_identity_policy.object_storage]
  namespace               = local.ns
  bucket                  = oci_objectstorage_bucket.own_a.name
  name                    = "${var.name}-to-${local.b}"
  destination_region_name = local.b
  destination_bucket_name = oci_objectstorage_bucket.replica_b.name
}

resource "oci_objectstorage_replication_policy" "b_to_a" {
  provider                = oci.b
  depends_on              = [oci_objectstorage_bucket.own_b, oci_objectstorage_bucket.replica_a, oci_identity_policy.object_storage]
  namespace               = local.ns
  bucket                  = oci_objectstorage_bucket.own_b.name
  name                    = "${var.name}-to-${local.a}"
  destination_region_name = local.a
  destination_bucket_name = oci_objectstorage_bucket.replica_a.name
}

# ---- identity ----

# Object Storage in both regions replicates, and encrypts with the Vault keys.
resource "oci_identity_policy" "object_storage" {
  provider       = oci.home
  compartment_id = var.compartment_ocid
  name           = "${var.name}-object-storage"
  description    = "Object Storage replicates Tarn's buckets both ways and uses their keys"
  statements = [
    "Allow service objectstorage-${local.a} to manage object-family in compartment id ${var.compartment_ocid}",
    "Allow service objectstorage-${local.b} to manage object-family in compartment id ${var.compartment_ocid}",
    "Allow service objectstorage-${local.a}, objectstorage-${local.b}, blockstorage to use keys in compartment id ${var.compartment_ocid}",
  ]
}

# The S3-compatible API takes customer secret keys, which belong to a user: a service user with
# read access to the four buckets and write access to the two it owns (snapshots), nothing else.
resource "oci_identity_user" "s3" {
  provider       = oci.home
  compartment_id = var.tenancy_ocid
  name           = "${var.name}-s3"
  description    = "Tarn's S3-compatible access to its buckets"
  email          = "${var.name}-s3@tarn.invalid"
}

resource "oci_identity_group" "s3" {
  provider       = oci.home
  compartment_id = var.tenancy_ocid
  name           = "${var.name}-s3"
  description    = "Tarn's bucket access"
}

resource "oci_identity_user_group_membership" "s3" {
  provider = oci.home
  user_id  = oci_identity_user.s3.id
  group_id = oci_identity_group.s3.id
}

resource "oci_identity_customer_secret_key" "s3" {
  provider     = oci.home
  user_id      = oci_identity_user.s3.id
  display_name = "${var.name}-instances"
}

resource "oci_identity_policy" "s3" {
  provider       = oci.home
  compartment_id = var.compartment_ocid
  name           = "${var.name}-s3"
  description    = "Tarn reads its four buckets and writes snapshots to the two it owns"
  statements = [
    "Allow group ${oci_identity_group.s3.name} to read buckets in compartment id ${var.compartment_ocid} where any {${join(", ", [for b in concat(values(local.own), values(local.replica)) : "target.bucket.name = '${b}'"])}}",
    "Allow group ${oci_identity_group.s3.name} to read objects in compartment id ${var.compartment_ocid} where any {${join(", ", [for b in concat(values(local.own), values(local.replica)) : "target.bucket.name = '${b}'"])}}",
    "Allow group ${oci_identity_group.s3.name} to manage objects in compartment id ${var.compartment_ocid} where all {any {${join(", ", [for b in values(local.own) : "target.bucket.name = '${b}'"])}}, any {request.permission = 'OBJECT_CREATE', request.permission = 'OBJECT_DELETE', request.permission = 'OBJECT_OVERWRITE'}}",
  ]
}

# The instances read their secrets with their instance principal.
resource "oci_identity_dynamic_group" "instances" {
  provider       = oci.home
  compartment_id = var.tenancy_ocid
  name           = "${var.name}-instances"
  description    = "Tarn's two instances"
  matching_rule  = "ANY {instance.id = '${module.region_a.instance_id}', instance.id = '${module.region_b.instance_id}'}"
}

resource "oci_identity_policy" "instances" {
  provider       = oci.home
  compartment_id = var.compartment_ocid
  name           = "${var.name}-instances"
  description    = "Tarn's instances read their two secrets, nothing else"
  statements = [
    "Allow dynamic-group ${oci_identity_dynamic_group.instances.name} to read secret-bundles in compartment id ${var.compartment_ocid} where any {${join(", ", [for s in local.secret_ids : "target.secret.id = '${s}'"])}}",
  ]
}

# ---- secrets ----

# The admin token is generated by Vault (it never enters Terraform's state) and replicated to the
# other region's Vault.
resource "oci_vault_secret" "admin_token" {
  provider               = oci.a
  compartment_id         = var.compartment_ocid
  vault_id               = oci_kms_vault.a.id
  key_id                 = oci_kms_key.a.id
  secret_name            = "${var.name}-admin-token"
  description            = "Tarn's admin token (the token named admin)"
  enable_auto_generation = true
  secret_generation_context {
    generation_type     = "PASSPHRASE"
    generation_template = "SECRETS_DEFAULT_PASSWORD"
    passphrase_length   = 48
  }
  replication_config {
    is_write_forward_enabled = false
    replication_targets {
      target_key_id   = oci_kms_key.b.id
      target_region   = local.b
      target_vault_id = oci_kms_vault.b.id
    }
  }
}

data "oci_vault_secrets" "admin_token_b" {
  provider       = oci.b
  depends_on     = [oci_vault_secret.admin_token]
  compartment_id = var.compartment_ocid
  vault_id       = oci_kms_vault.b.id
  name           = oci_vault_secret.admin_token.secret_name
}

# The customer secret key: OCI answers its secret once, at creation, so it passes through the
# state (keep the state encrypted and access-controlled); the instances read it from Vault.
resource "oci_vault_secret" "s3_key_a" {
  provider       = oci.a
  compartment_id = var.compartment_ocid
  vault_id       = oci_kms_vault.a.id
  key_id         = oci_kms_key.a.id
  secret_name    = "${var.name}-s3-key"
  description    = "Tarn's S3-compatible key, as <access key>:<secret>"
  secret_content {
    content_type = "BASE64"
    content      = base64encode("${oci_identity_customer_secret_key.s3.id}:${oci_identity_customer_secret_key.s3.key}")
  }
}

resource "oci_vault_secret" "s3_key_b" {
  provider       = oci.b
  compartment_id = var.compartment_ocid
  vault_id       = oci_kms_vault.b.id
  key_id         = oci_kms_key.b.id
  secret_name    = "${var.name}-s3-key"
  description    = "Tarn's S3-compatible key, as <access key>:<secret>"
  secret_content {
    content_type = "BASE64"
    content      = base64encode("${oci_identity_customer_secret_key.s3.id}:${oci_identity_customer_secret_key.s3.key}")
  }
}

locals {
  admin_token_b = data.oci_vault_secrets.admin_token_b.secrets[0].id
  secret_ids = concat(
    [oci_vault_secret.admin_token.id, local.admin_token_b, oci_vault_secret.s3_key_a.id, oci_vault_secret.s3_key_b.id],
    flatten([for s in values(var.tls_secrets) : [s.cert, s.key]]),
  )
}

# ---- the release binary, in each region's bucket, read through a read-only URL ----

resource "oci_objectstorage_object" "binary_a" {
  provider  = oci.a
  namespace = local.ns
  bucket    = oci_objectstorage_bucket.own_a.name
  object    = local.binary_key
  source    = var.tarn_binary
}

resource "oci_objectstorage_object" "binary_b" {
  provider  = oci.b
  namespace = local.ns
  bucket    = oci_objectstorage_bucket.own_b.name
  object    = local.binary_key
  source    = var.tarn_binary
}

resource "oci_objectstorage_preauthrequest" "binary_a" {
  provider     = oci.a
  namespace    = local.ns
  bucket       = oci_objectstorage_bucket.own_a.name
  object_name  = oci_objectstorage_object.binary_a.object
  name         = "${var.name}-binary"
  access_type  = "ObjectRead"
  time_expires = var.binary_url_expires
}

resource "oci_objectstorage_preauthrequest" "binary_b" {
  provider     = oci.b
  namespace    = local.ns
  bucket       = oci_objectstorage_bucket.own_b.name
  object_name  = oci_objectstorage_object.binary_b.object
  name         = "${var.name}-binary"
  access_type  = "ObjectRead"
  time_expires = var.binary_url_expires
}

# ---- Tarn in each region ----

module "region_a" {
  source                = "../modules/oci-region"
  providers             = { oci = oci.a }
  name                  = "${var.name}-${local.a}"
  region                = local.a
  compartment_ocid      = var.compartment_ocid
  vcn_cidr              = "10.70.0.0/16"
  shape                 = var.shape
  ocpus                 = var.ocpus
  memory_gbs            = var.memory_gbs
  data_volume_gb        = var.data_volume_gb
  allowed_cidrs         = var.allowed_cidrs
  kms_key_id            = oci_kms_key.a.id
  namespace             = local.ns
  own_bucket            = oci_objectstorage_bucket.own_a.name
  binary_url            = "https://objectstorage.${local.a}.oraclecloud.com${oci_objectstorage_preauthrequest.binary_a.access_uri}"
  admin_token_secret_id = oci_vault_secret.admin_token.id
  s3_key_secret_id      = oci_vault_secret.s3_key_a.id
  tls_secrets           = lookup(var.tls_secrets, local.a, null)
  tarn                  = local.tarn
}

module "region_b" {
  source                = "../modules/oci-region"
  providers             = { oci = oci.b }
  name                  = "${var.name}-${local.b}"
  region                = local.b
  compartment_ocid      = var.compartment_ocid
  vcn_cidr              = "10.71.0.0/16"
  shape                 = var.shape
  ocpus                 = var.ocpus
  memory_gbs            = var.memory_gbs
  data_volume_gb        = var.data_volume_gb
  allowed_cidrs         = var.allowed_cidrs
  kms_key_id            = oci_kms_key.b.id
  namespace             = local.ns
  own_bucket            = oci_objectstorage_bucket.own_b.name
  binary_url            = "https://objectstorage.${local.b}.oraclecloud.com${oci_objectstorage_preauthrequest.binary_b.access_uri}"
  admin_token_secret_id = local.admin_token_b
  s3_key_secret_id      = oci_vault_secret.s3_key_b.id
  tls_secrets           = lookup(var.tls_secrets, local.b, null)
  tarn                  = local.tarn
}
