variable "pw" {
  type      = string
  sensitive = true
}

variable "n" {
  type    = number
  default = 3
  validation {
    condition     = var.n > 0 && var.n < 10
    error_message = "n must be 1..9"
  }
}

variable "hosts" {
  type    = list(string)
  default = ["quay.io", "docker.io"]
}

variable "labels" {
  type    = map(string)
  default = { team = "infra" }
}

locals {
  name    = lower(format("%s-%d", "Mirror", var.n))
  parts   = split(":", "a:b:c")
  joined  = join(",", concat(local.parts, ["d"]))
  set     = toset(["a", "b", "a"])
  list    = tolist(local.set)
  merged  = merge(var.labels, { env = "prod" })
  keys    = keys(local.merged)
  vals    = values(local.merged)
  first   = coalesce("", "x")
  enc     = base64encode("u:${var.pw}")
  dec     = base64decode(local.enc)
  json    = jsonencode({ a = [1, "x"], b = true })
  back    = jsondecode(local.json)
  digest  = sha256(local.joined)
  str     = tostring(var.n)
  len     = length(var.hosts)
  has     = contains(var.hosts, "quay.io")
  up      = upper(trimspace("  x  "))
  rep     = replace("a-b-c", "-", "/")
  look    = lookup(var.labels, "team", "none")
  data    = file("data.txt")
  home    = env("MIRRORPLAN_SURELY_UNSET", "dflt")
  math    = (var.n * 2 + 1) / 3 - 4 % 3
  cond    = var.n > 2 ? "big" : "small"
  squares = [for i in [1, 2, 3] : i * i if i > 1]
  byname  = { for h in var.hosts : h => upper(h) }
  splat   = [{ a = 1 }, { a = 2 }][*].a
  tmpl    = "%{for h in var.hosts}${h};%{endfor}"
  heredoc = <<-EOT
    hello ${local.name}
  EOT
}

registry "mirror" {
  endpoint  = "https://mirror.example:5000"
  namespace = local.name
  username  = "pusher"
  password  = var.pw
}

image_set "extras" {
  registry  = registry.mirror
  images    = ["somehost.io/team/app:2.3"]
  platforms = ["linux/amd64"]
}

cluster "c" {
  nodes = ["local:./nodes/n1"]
  registry_mirror {
    registry = registry.mirror
    hosts    = var.hosts
  }
  containerd {
    restart_command = "systemctl restart containerd # ${local.cond}"
  }
}

output "joined" {
  value = local.joined
}

output "pw" {
  value     = var.pw
  sensitive = true
}
