"""Structural checks of terraform/ (python-hcl2, offline): the resources of the deployment exist
and are wired as the design needs them. Run by scripts/terraform-check.sh.

    python structure.py TERRAFORM_DIR        # exit 1 and list what is wrong
    python structure.py --self-test TERRAFORM_DIR   # each check fails on a copy broken for it
"""
import glob
import os
import re
import shutil
import sys
import tempfile

import hcl2


def unquote(v):
    """python-hcl2 keeps string quotes and block markers: strip them, recursively."""
    if isinstance(v, str):
        return v[1:-1] if len(v) >= 2 and v[0] == '"' and v[-1] == '"' else v
    if isinstance(v, list):
        return [unquote(x) for x in v]
    if isinstance(v, dict):
        return {unquote(k): unquote(x) for k, x in v.items() if k != "__is_block__"}
    return v


def load(directory):
    """Every block of the .tf files under `directory`: {kind: [(file, type, name, body)]}."""
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "**", "*.tf"), recursive=True)):
        with open(path) as f:
            doc = unquote(hcl2.load(f))
        rel = os.path.relpath(path, directory)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        out.setdefault(kind, []).append((rel, rtype, name, body))
        for kind in ("variable", "output", "module", "terraform", "provider", "locals"):
            for block in doc.get(kind, []):
                if kind in ("terraform", "locals"):
                    out.setdefault(kind, []).append((rel, kind, "", block))
                else:
                    for name, body in block.items():
                        out.setdefault(kind, []).append((rel, kind, name, body))
    return out


def resources(tf, rtype, under=""):
    return [(f, n, b) for f, t, n, b in tf.get("resource", []) if t == rtype and f.startswith(under)]


def first(v):
    return v[0] if isinstance(v, list) and v else v


def check(directory):
    tf = load(directory)
    problems = []

    def need(ok, what):
        if not ok:
            problems.append(what)

    # Layout.
    for root in ("aws", "oci"):
        for f in ("versions.tf", "variables.tf", "outputs.tf", "README.md", "example.tfvars"):
            need(os.path.exists(os.path.join(directory, root, f)), f"terraform/{root}/{f} exists")
    for tpl in glob.glob(os.path.join(directory, "**", "*.tftpl"), recursive=True):
        example = tpl[: -len(".tftpl")] + ".example.json"
        need(os.path.exists(example), f"{os.path.relpath(tpl, directory)} has its example values beside it")
    # Pinned providers.
    pins = {}
    for f, _, _, body in tf.get("terraform", []):
        for req in body.get("required_providers", []):
            for name, spec in req.items():
                pins.setdefault(f.split(os.sep)[0], {})[name] = spec
    need(pins.get("aws", {}).get("aws", {}).get("source") == "hashicorp/aws", "aws: provider hashicorp/aws")
    need(bool(pins.get("aws", {}).get("aws", {}).get("version")), "aws: provider version pinned")
    need(pins.get("oci", {}).get("oci", {}).get("source") == "oracle/oci", "oci: provider oracle/oci")
    need(bool(pins.get("oci", {}).get("oci", {}).get("version")), "oci: provider version pinned")
    # Every variable documented.
    for f, _, name, body in tf.get("variable", []):
        need(bool(body.get("description")), f"{f}: variable {name} has a description")

    # AWS: replication both ways, to the other region, deletes and replica changes synced,
    # versioning on before it.
    repl = resources(tf, "aws_s3_bucket_replication_configuration", "aws")
    need(len(repl) == 2, "aws: two replication configurations (both ways)")
    sources = set()
    for f, name, body in repl:
        rule = first(body.get("rule", []))
        dest = first(rule.get("destination", [])) if rule else {}
        src_bucket, dst_bucket = body.get("bucket", ""), dest.get("bucket", "")
        src = re.search(r"bucket_(\w)", src_bucket)
        dst = re.search(r"bucket_(\w)", dst_bucket)
        need(bool(src and dst and src.group(1) != dst.group(1)), f"aws: {name} replicates to the other bucket")
        need(body.get("provider") in ("${aws.a}", "aws.a", "${aws.b}", "aws.b"), f"aws: {name} runs in one of the two regions")
        sources.add(body.get("provider"))
        need(first(rule.get("delete_marker_replication", [{}])).get("status") == "Enabled",
             f"aws: {name} replicates delete markers")
        crit = first(rule.get("source_selection_criteria", [{}]))
        need(first(crit.get("replica_modifications", [{}])).get("status") == "Enabled",
             f"aws: {name} syncs replica modifications")
        deps = " ".join(body.get("depends_on", []))
        need("module.bucket_a" in deps and "module.bucket_b" in deps, f"aws: {name} waits for both buckets' versioning")
    need(len(sources) == 2, "aws: the two replications run in different regions")
    versioning = resources(tf, "aws_s3_bucket_versioning", "modules")
    need(any(first(b.get("versioning_configuration", [{}])).get("status") == "Enabled" for _, _, b in versioning),
         "aws: bucket versioning enabled")
    outputs = {n: b for f, _, n, b in tf.get("output", []) if f.startswith("modules/aws-bucket")}
    need("aws_s3_bucket_versioning" in str(outputs.get("id", {}).get("value", "")),
         "aws: the bucket's id comes from its versioning, so replication follows it")
    blocks = resources(tf, "aws_s3_bucket_public_access_block", "modules")
    need(bool(blocks) and all(all(b.get(k) is True for k in ("block_public_acls", "block_public_policy",
                                                              "ignore_public_acls", "restrict_public_buckets"))
                              for _, _, b in blocks), "aws: public access blocked")
    need(bool(resources(tf, "aws_s3_bucket_server_side_encryption_configuration", "modules")), "aws: encryption at rest")
    life = resources(tf, "aws_s3_bucket_lifecycle_configuration", "modules")
    need(any("noncurrent_version_expiration" in first(b.get("rule", [{}])) for _, _, b in life),
         "aws: old versions expire")
    need(bool(resources(tf, "aws_secretsmanager_secret", "aws")), "aws: the admin token in Secrets Manager")
    need(bool(resources(tf, "aws_iam_instance_profile", "modules")), "aws: an instance role, no keys")
    # IAM: nothing allows * or s3:* on *.
    for f, t, n, body in tf.get("data", []):
        if t != "aws_iam_policy_document":
            continue
        for st in body.get("statement", []):
            actions, res = st.get("actions", []), st.get("resources", [])
            principal = str(st.get("principals", ""))
            account_key_policy = ":root" in principal
            need(not (set(actions) & {"*", "s3:*"} and "*" in res and not account_key_policy),
                 f"{f}: {n} allows {actions} on *")
    # Health checks.
    tgs = resources(tf, "aws_lb_target_group", "modules")
    need(bool(tgs) and all(first(b.get("health_check", [{}])).get("path") == "/readyz" for _, _, b in tgs),
         "aws: load balancer health checks are GET /readyz")

    # OCI: two one-way replication policies, in opposite directions, to a different region.
    pols = resources(tf, "oci_objectstorage_replication_policy", "oci")
    need(len(pols) == 2, "oci: two replication policies (one each way)")
    dests = set()
    for f, name, body in pols:
        prov = body.get("provider", "")
        dest = body.get("destination_region_name", "")
        here = "a" if prov.endswith(".a}") or prov.endswith(".a") else "b"
        need(dest.endswith(".b}") if here == "a" else dest.endswith(".a}"), f"oci: {name} replicates to the other region")
        dests.add(dest)
        deps = " ".join(body.get("depends_on", []))
        need("oci_objectstorage_bucket.own_" in deps and "oci_identity_policy.object_storage" in deps,
             f"oci: {name} waits for its buckets and the service's policy")
    need(len(dests) == 2, "oci: the destination regions differ")
    buckets = resources(tf, "oci_objectstorage_bucket", "oci")
    need(len(buckets) == 4, "oci: four buckets (each region's own and the other's replica)")
    need(all(b.get("access_type") == "NoPublicAccess" for _, _, b in buckets), "oci: no bucket is public")
    need(all(b.get("kms_key_id") for _, _, b in buckets), "oci: buckets encrypted with Vault keys")
    need(all(b.get("versioning") == "Enabled" for _, n, b in buckets if n.startswith("own")),
         "oci: source buckets versioned")
    statements = " ".join(" ".join(b.get("statements", [])) for _, _, b in resources(tf, "oci_identity_policy", "oci"))
    for region in ("local.a", "local.b"):
        need(f"Allow service objectstorage-${{{region}}} to manage object-family" in statements,
             f"oci: Object Storage in {region} may replicate")
    need("all-resources in tenancy" not in statements and "manage all-resources" not in statements,
         "oci: no policy grants all resources")
    need(bool(resources(tf, "oci_identity_dynamic_group", "oci")), "oci: a dynamic group for the instances")
    need(bool(resources(tf, "oci_vault_secret", "oci")), "oci: secrets in Vault")
    sets = resources(tf, "oci_network_load_balancer_backend_set", "modules")
    need(bool(sets) and all(first(b.get("health_checker", [{}])).get("url_path") == "/readyz" for _, _, b in sets),
         "oci: load balancer health checks are GET /readyz")
    for root in ("aws", "oci"):
        names = {n for f, _, n, _ in tf.get("output", []) if f.startswith(root + os.sep)}
        for o in ("urls", "buckets", "admin_token_secret", "drill"):
            need(o in names, f"{root}: output {o}")
    return problems


# Each break makes at least one check fail (the checks can fail).
BREAKS = [
    ("aws/main.tf", r'resource "aws_s3_bucket_replication_configuration" "b_to_a"', 'resource "aws_s3_bucket_replication_configuration_x" "b_to_a"'),
    ("aws/main.tf", "bucket        = module.bucket_b.arn", "bucket        = module.bucket_a.arn"),
    ("modules/aws-region/main.tf", 'path                = "/readyz"', 'path                = "/healthz"'),
    ("modules/aws-bucket/main.tf", "restrict_public_buckets = true", "restrict_public_buckets = false"),
    ("modules/aws-region/main.tf", '"s3:GetObject", "s3:GetObjectVersion"]\n    resources = [for b in var.read_buckets : "${b.arn}/*"]',
     '"s3:*"]\n    resources = ["*"]'),
    ("oci/main.tf", "destination_region_name = local.b", "destination_region_name = local.a"),
    ("oci/main.tf", 'access_type           = "NoPublicAccess"\n  versioning            = "Enabled"\n  kms_key_id            = oci_kms_key.a.id',
     'access_type           = "ObjectRead"\n  versioning            = "Enabled"\n  kms_key_id            = oci_kms_key.a.id'),
]


def self_test(directory):
    failures = []
    for path, old, new in BREAKS:
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "terraform")
            shutil.copytree(directory, copy)
            target = os.path.join(copy, path)
            text = open(target).read()
            if old not in text:
                failures.append(f"break for {path} does not apply: {old!r}")
                continue
            open(target, "w").write(text.replace(old, new, 1))
            if not check(copy):
                failures.append(f"no check failed with {path}: {old!r} -> {new!r}")
    return failures


def main():
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        failures = self_test(args[1])
        for f in failures:
            print("self-test:", f)
        print(f"structure self-test: {len(BREAKS) - len(failures)}/{len(BREAKS)} breaks caught")
        sys.exit(1 if failures else 0)
    problems = check(args[0])
    for p in problems:
        print("FAILED:", p)
    print(f"terraform structure: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
