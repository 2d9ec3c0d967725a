locals {
  a = local.b
  b = local.a
}
registry "r" {
  endpoint = "oci:./store"
  bogus = 1
}
