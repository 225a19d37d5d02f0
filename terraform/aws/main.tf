# Active/active Tarn in two AWS regions: a versioned, encrypted, private bucket in each region,
# replicated both ways (each region holds a full copy); a Tarn instance per region reading its own
# region's copy and failing over to the other's; the admin token in Secrets Manager, replicated.

data "aws_caller_identity" "me" {
  provider = aws.a
}

locals {
  account = data.aws_caller_identity.me.account_id
  bucket = {
    a = "${var.name}-lake-${var.regions[0]}-${local.account}"
    b = "${var.name}-lake-${var.regions[1]}-${local.account}"
  }
  binary_key = "releases/tarn-${filemd5(var.tarn_binary)}"
  # Both buckets hold the same objects: a table declared over either is read, in each region,
  # from that region's bucket.
  tarn = {
    regions = {
      (var.regions[0]) = { endpoint = "https://s3.${var.regions[0]}.amazonaws.com" }
      (var.regions[1]) = { endpoint = "https://s3.${var.regions[1]}.amazonaws.com" }
    }
    replicas = [
      {
        primary_region = var.regions[0], primary_location = "s3://${local.bucket.a}/"
        replica_region = var.regions[1], replica_location = "s3://${local.bucket.b}/"
      },
      {
        primary_region = var.regions[1], primary_location = "s3://${local.bucket.b}/"
        replica_region = var.regions[0], replica_location = "s3://${local.bucket.a}/"
      },
    ]
    allowed_locations = ["s3://${local.bucket.a}/", "s3://${local.bucket.b}/"]
  }
}

# ---- keys ----

resource "aws_kms_key" "a" {
  provider                = aws.a
  description             = "Tarn ${var.regions[0]}: bucket, volumes, logs, secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_key" "b" {
  provider                = aws.b
  description             = "Tarn ${var.regions[1]}: bucket, volumes, logs, secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

# The account administers its keys; CloudWatch Logs may use them for the flow logs.
data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_111:a key policy's resource is the key itself; this is AWS's default statement giving the account's IAM control of it
  #checkov:skip=CKV_AWS_356:a key policy's resource is the key itself ("*" means this key)
  #checkov:skip=CKV_AWS_109:a key policy's resource is the key itself; this is AWS's default statement giving the account's IAM control of it
  statement {
    sid       = "Account"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "Logs"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.amazonaws.com"]
    }
  }
}

# ---- buckets ----

module "bucket_a" {
  source                  = "../modules/aws-bucket"
  providers               = { aws = aws.a }
  name                    = local.bucket.a
  kms_key_arn             = aws_kms_key.a.arn
  noncurrent_version_days = var.noncurrent_version_days
}

module "bucket_b" {
  source                  = "../modules/aws-bucket"
  providers               = { aws = aws.b }
  name                    = local.bucket.b
  kms_key_arn             = aws_kms_key.b.arn
  noncurrent_version_days = var.noncurrent_version_days
}

# Replication both ways: what either region writes reaches the other, deletes included, and
# replicas changed on one side are synced back.
resource "aws_s3_bucket_replication_configuration" "a_to_b" {
  provider   = aws.a
  depends_on = [module.bucket_a, module.bucket_b]
  bucket     = module.bucket_a.id
  role       = aws_iam_role.replication.arn
  rule {
    id       = "to-${var.regions[1]}"
    status   = "Enabled"
    priority = 1
    filter {}
    delete_marker_replication {
      status = "Enabled"
    }
    source_selection_criteria {
      replica_modifications {
        status = "Enabled"
      }
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }
    destination {
      bucket        = module.bucket_b.arn
      storage_class = "STANDARD"
      encryption_configuration {
        replica_kms_key_id = aws_kms_key.b.arn
      }
    }
  }
}

resource "aws_s3_bucket_replication_configuration" "b_to_a" {
  provider   = aws.b
  depends_on = [module.bucket_a, module.bucket_b]
  bucket     = module.bucket_b.id
  role       = aws_iam_role.replication.arn
  rule {
    id       = "to-${var.regions[0]}"
    status   = "Enabled"
    priority = 1
    filter {}
    delete_marker_replication {
      status = "Enabled"
    }
    source_selection_criteria {
      replica_modifications {
        status = "Enabled"
      }
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
    }
    destination {
      bucket        = module.bucket_a.arn
      storage_class = "STANDARD"
      encryption_configuration {
        replica_kms_key_id = aws_kms_key.a.arn
      }
    }
  }
}

data "aws_iam_policy_document" "replication_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "replication" {
  provider           = aws.a
  name               = "${var.name}-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_assume.json
}

data "aws_iam_policy_document" "replication" {
  statement {
    sid       = "ReadSources"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [module.bucket_a.arn, module.bucket_b.arn]
  }
  statement {
    sid = "ReadSourceVersions"
    actions = ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionTagging"]
    resources = ["${module.bucket_a.arn}/*", "${module.bucket_b.arn}/*"]
  }
  statement {
    sid       = "WriteReplicas"
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = ["${module.bucket_a.arn}/*", "${module.bucket_b.arn}/*"]
  }
  statement {
    sid       = "UseTheKeys"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.a.arn, aws_kms_key.b.arn]
  }
}

resource "aws_iam_role_policy" "replication" {
  provider = aws.a
  role     = aws_iam_role.replication.id
  policy   = data.aws_iam_policy_document.replication.json
}

# ---- the admin token: generated without entering the state, kept in Secrets Manager ----

ephemeral "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "admin_token" {
  #checkov:skip=CKV2_AWS_57:Tarn reads the token at start; rotating it needs a restart of both instances, done by re-applying with a new secret_string_wo_version
  provider                = aws.a
  name                    = "${var.name}-admin-token"
  description             = "Tarn's admin token (the token named admin)"
  kms_key_id              = aws_kms_key.a.arn
  recovery_window_in_days = 7
  replica {
    region     = var.regions[1]
    kms_key_id = aws_kms_key.b.arn
  }
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  provider                 = aws.a
  secret_id                = aws_secretsmanager_secret.admin_token.id
  secret_string_wo         = ephemeral.random_password.admin_token.result
  secret_string_wo_version = 1
}

# ---- the release binary, in each region's bucket ----

resource "aws_s3_object" "binary_a" {
  provider   = aws.a
  bucket     = module.bucket_a.id
  key        = local.binary_key
  source     = var.tarn_binary
  kms_key_id = aws_kms_key.a.arn
}

resource "aws_s3_object" "binary_b" {
  provider   = aws.b
  bucket     = module.bucket_b.id
  key        = local.binary_key
  source     = var.tarn_binary
  kms_key_id = aws_kms_key.b.arn
}

# ---- Tarn in each region ----

module "region_a" {
  source                 = "../modules/aws-region"
  providers              = { aws = aws.a }
  depends_on             = [aws_s3_object.binary_a, aws_secretsmanager_secret_version.admin_token]
  name                   = "${var.name}-${var.regions[0]}"
  region                 = var.regions[0]
  vpc_cidr               = "10.60.0.0/16"
  instance_type          = var.instance_type
  data_volume_gb         = var.data_volume_gb
  allowed_cidrs          = var.allowed_cidrs
  kms_key_arn            = aws_kms_key.a.arn
  own_bucket             = { name = module.bucket_a.id, arn = module.bucket_a.arn }
  read_buckets           = [{ name = module.bucket_a.id, arn = module.bucket_a.arn }, { name = module.bucket_b.id, arn = module.bucket_b.arn }]
  bucket_kms_key_arns    = [aws_kms_key.a.arn, aws_kms_key.b.arn]
  binary_key             = local.binary_key
  admin_token_secret_arn = aws_secretsmanager_secret.admin_token.arn
  tls_secrets            = lookup(var.tls_secrets, var.regions[0], null)
  tarn                   = local.tarn
}

module "region_b" {
  source                 = "../modules/aws-region"
  providers              = { aws = aws.b }
  depends_on             = [aws_s3_object.binary_b, aws_secretsmanager_secret_version.admin_token]
  name                   = "${var.name}-${var.regions[1]}"
  region                 = var.regions[1]
  vpc_cidr               = "10.61.0.0/16"
  instance_type          = var.instance_type
  data_volume_gb         = var.data_volume_gb
  allowed_cidrs          = var.allowed_cidrs
  kms_key_arn            = aws_kms_key.b.arn
  own_bucket             = { name = module.bucket_b.id, arn = module.bucket_b.arn }
  read_buckets           = [{ name = module.bucket_b.id, arn = module.bucket_b.arn }, { name = module.bucket_a.id, arn = module.bucket_a.arn }]
  bucket_kms_key_arns    = [aws_kms_key.a.arn, aws_kms_key.b.arn]
  binary_key             = local.binary_key
  admin_token_secret_arn = replace(aws_secretsmanager_secret.admin_token.arn, ":${var.regions[0]}:", ":${var.regions[1]}:")
  tls_secrets            = lookup(var.tls_secrets, var.regions[1], null)
  tarn                   = local.tarn
}
