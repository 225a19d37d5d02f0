# One region's Tarn on AWS: a VPC with no route to the internet from the instance (S3 through a
# gateway endpoint, Secrets Manager through an interface endpoint), an EC2 instance whose data
# directory is an encrypted EBS volume, and a network load balancer in front of its three doors,
# each target checked with GET /readyz.

data "aws_availability_zones" "here" {
  #checkov:skip=CKV_AWS_394:only the first two zones are used, and zones AWS adds later get letters after them, so the two do not change
  state = "available"
}

data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

data "aws_ec2_instance_type" "tarn" {
  instance_type = var.instance_type
}

locals {
  azs = slice(data.aws_availability_zones.here.names, 0, 2)
  # 75% of the instance's memory, as Tarn's own default would take.
  memory_limit = "${floor(data.aws_ec2_instance_type.tarn.memory_size * 3 / 4)}MiB"
  doors = {
    http   = { port = 8080, listen = local.tls ? 443 : 80 }
    mysql  = { port = 3306, listen = 3306 }
    flight = { port = 50051, listen = 50051 }
  }
  tls     = var.tls_secrets != null
  tls_dir = "/etc/tarn/tls"
}

module "config" {
  source            = "../tarn-config"
  instance_name     = var.name
  memory_limit      = local.memory_limit
  home_region       = var.region
  allowed_locations = var.tarn.allowed_locations
  snapshot_location = "s3://${var.own_bucket.name}/tarn-snapshots/${var.name}/"
  tls_cert          = local.tls ? "${local.tls_dir}/cert.pem" : ""
  tls_key           = local.tls ? "${local.tls_dir}/key.pem" : ""
  regions           = var.tarn.regions
  replicas          = var.tarn.replicas
}

resource "aws_vpc" "tarn" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

# Nothing may use the default security group.
resource "aws_default_security_group" "closed" {
  vpc_id = aws_vpc.tarn.id
}

resource "aws_flow_log" "tarn" {
  vpc_id               = aws_vpc.tarn.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow.arn
  iam_role_arn         = aws_iam_role.flow.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  name              = "/tarn/${var.name}/flow"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "flow_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "flow" {
  name               = "${var.name}-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_assume.json
}

data "aws_iam_policy_document" "flow" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow" {
  role   = aws_iam_role.flow.id
  policy = data.aws_iam_policy_document.flow.json
}

resource "aws_subnet" "public" {
  count             = 2
  vpc_id            = aws_vpc.tarn.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)
  tags              = { Name = "${var.name}-public-${count.index}" }
}

resource "aws_subnet" "private" {
  vpc_id            = aws_vpc.tarn.id
  availability_zone = local.azs[0]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 10)
  tags              = { Name = "${var.name}-private" }
}

resource "aws_internet_gateway" "tarn" {
  vpc_id = aws_vpc.tarn.id
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.tarn.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.tarn.id
  }
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.tarn.id
}

resource "aws_route_table_association" "private" {
  subnet_id      = aws_subnet.private.id
  route_table_id = aws_route_table.private.id
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.tarn.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
}

resource "aws_vpc_endpoint" "secrets" {
  vpc_id              = aws_vpc.tarn.id
  service_name        = "com.amazonaws.${var.region}.secretsmanager"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = [aws_subnet.private.id]
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "HTTPS from the Tarn instance to the VPC's interface endpoints"
  vpc_id      = aws_vpc.tarn.id
  ingress {
    description     = "HTTPS from the instance"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = [aws_security_group.instance.id]
  }
}

resource "aws_security_group" "lb" {
  name        = "${var.name}-lb"
  description = "Tarn's doors, from the allowed client ranges"
  vpc_id      = aws_vpc.tarn.id
  dynamic "ingress" {
    for_each = local.doors
    content {
      description = "Tarn ${ingress.key}"
      from_port   = ingress.value.listen
      to_port     = ingress.value.listen
      protocol    = "tcp"
      cidr_blocks = var.allowed_cidrs
    }
  }
  egress {
    description = "To the instance's doors"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_security_group" "instance" {
  name        = "${var.name}-instance"
  description = "Tarn's doors, from the load balancer only"
  vpc_id      = aws_vpc.tarn.id
  dynamic "ingress" {
    for_each = local.doors
    content {
      description     = "Tarn ${ingress.key} from the load balancer"
      from_port       = ingress.value.port
      to_port         = ingress.value.port
      protocol        = "tcp"
      security_groups = [aws_security_group.lb.id]
    }
  }
  egress {
    description = "HTTPS to S3 and Secrets Manager through the VPC endpoints"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
  egress {
    description     = "HTTPS to S3 through its gateway endpoint"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    prefix_list_ids = [aws_vpc_endpoint.s3.prefix_list_id]
  }
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

# Least privilege: read the buckets, write snapshots under the instance's own prefix, read the
# admin token and the release binary; nothing else.
data "aws_iam_policy_document" "instance" {
  statement {
    sid       = "ListTheBuckets"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [for b in var.read_buckets : b.arn]
  }
  statement {
    sid       = "ReadTheTables"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [for b in var.read_buckets : "${b.arn}/*"]
  }
  statement {
    sid       = "WriteSnapshots"
    actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${var.own_bucket.arn}/tarn-snapshots/${var.name}/*"]
  }
  statement {
    sid       = "UseTheBucketKeys"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = var.bucket_kms_key_arns
  }
  statement {
    sid       = "ReadTheSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([var.admin_token_secret_arn], local.tls ? [var.tls_secrets.cert, var.tls_secrets.key] : [])
  }
}

resource "aws_iam_role_policy" "instance" {
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.instance.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name}-instance"
  role = aws_iam_role.instance.name
}

resource "aws_instance" "tarn" {
  ami                    = nonsensitive(data.aws_ssm_parameter.al2023.value)
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.private.id
  vpc_security_group_ids = [aws_security_group.instance.id]
  iam_instance_profile   = aws_iam_instance_profile.instance.name
  ebs_optimized          = true
  monitoring             = true
  user_data_base64 = base64gzip(templatefile("${path.module}/cloud-init.yaml.tftpl", {
    tarn_toml              = module.config.toml
    region                 = var.region
    binary_url             = "s3://${var.own_bucket.name}/${var.binary_key}"
    admin_token_secret_arn = var.admin_token_secret_arn
    tls_cert_secret        = local.tls ? var.tls_secrets.cert : ""
    tls_key_secret         = local.tls ? var.tls_secrets.key : ""
    tls_dir                = local.tls_dir
    data_device            = "/dev/sdf"
  }))
  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }
  root_block_device {
    encrypted  = true
    kms_key_id = var.kms_key_arn
  }
  tags = { Name = var.name }
}

resource "aws_ebs_volume" "data" {
  availability_zone = local.azs[0]
  size              = var.data_volume_gb
  encrypted         = true
  kms_key_id        = var.kms_key_arn
  tags              = { Name = "${var.name}-data" }
}

resource "aws_volume_attachment" "data" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.tarn.id
}

resource "aws_lb" "tarn" {
  #checkov:skip=CKV2_AWS_20:a network load balancer with TCP/TLS listeners: there is no HTTP listener to redirect
  #checkov:skip=CKV_AWS_91:access logs need a log bucket per region; turn on with access_logs when one exists
  name                             = var.name
  load_balancer_type               = "network"
  subnets                          = aws_subnet.public[*].id
  security_groups                  = [aws_security_group.lb.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = true
}

resource "aws_lb_target_group" "door" {
  for_each    = local.doors
  name        = "${var.name}-${each.key}"
  port        = each.value.port
  protocol    = "TCP"
  vpc_id      = aws_vpc.tarn.id
  target_type = "instance"
  # Every door is in service only while Tarn answers GET /readyz (recovered and ready).
  health_check {
    protocol            = local.tls ? "HTTPS" : "HTTP"
    port                = "8080"
    path                = "/readyz"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_target_group_attachment" "door" {
  for_each         = local.doors
  target_group_arn = aws_lb_target_group.door[each.key].arn
  target_id        = aws_instance.tarn.id
  port             = each.value.port
}

resource "aws_lb_listener" "door" {
  for_each          = local.doors
  load_balancer_arn = aws_lb.tarn.arn
  port              = each.value.listen
  # TCP through to Tarn, which serves TLS itself when given a certificate (MySQL clients switch
  # to TLS inside their protocol, so the load balancer could not terminate it for that door).
  protocol = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.door[each.key].arn
  }
}
