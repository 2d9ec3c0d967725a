//! The functions available in expressions.
//!
//! hcl-rs evaluates expressions but ships no functions; these are the ones
//! Terraform users reach for. `file` reads relative to the configuration
//! directory and only from `plan` on: during `validate` it yields an unknown
//! value, so a configuration validates on a machine that lacks its files.

use std::cell::RefCell;
use std::path::PathBuf;

use base64::Engine as _;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Value};
use sha2::Digest as _;

/// Marks a string whose value is not known yet (validate without variables or files).
pub const UNKNOWN: &str = "\u{1}(known after plan)\u{1}";

thread_local! {
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Sets the directory `file()` reads from; `None` makes `file()` yield an unknown value.
pub fn set_file_base(dir: Option<PathBuf>) {
    BASE_DIR.with(|b| *b.borrow_mut() = dir);
}

/// True when the value is or contains an unknown marker.
pub fn is_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(UNKNOWN),
        Value::Array(a) => a.iter().any(is_unknown),
        Value::Object(o) => o.values().any(is_unknown),
        _ => false,
    }
}

/// All function names, for "did you mean".
pub const NAMES: &[&str] = &[
    "file",
    "env",
    "format",
    "join",
    "split",
    "concat",
    "lookup",
    "merge",
    "toset",
    "tolist",
    "lower",
    "upper",
    "trimspace",
    "replace",
    "length",
    "contains",
    "keys",
    "values",
    "coalesce",
    "base64encode",
    "base64decode",
    "jsonencode",
    "jsondecode",
    "sha256",
    "tostring",
];

/// Declares every function in the context.
pub fn declare_all(ctx: &mut Context) {
    use ParamType as P;
    let s = || P::String;
    ctx.declare_func("file", FuncDef::builder().param(s()).build(file));
    ctx.declare_func(
        "env",
        FuncDef::builder()
            .param(s())
            .variadic_param(P::String)
            .build(env),
    );
    ctx.declare_func(
        "format",
        FuncDef::builder()
            .param(s())
            .variadic_param(P::Any)
            .build(format),
    );
    ctx.declare_func(
        "join",
        FuncDef::builder()
            .param(s())
            .param(P::array_of(P::Any))
            .build(join),
    );
    ctx.declare_func("split", FuncDef::builder().params([s(), s()]).build(split));
    ctx.declare_func(
        "concat",
        FuncDef::builder()
            .variadic_param(P::array_of(P::Any))
            .build(concat),
    );
    ctx.declare_func(
        "lookup",
        FuncDef::builder()
            .param(P::object_of(P::Any))
            .param(s())
            .variadic_param(P::Any)
            .build(lookup),
    );
    ctx.declare_func(
        "merge",
        FuncDef::builder()
            .variadic_param(P::object_of(P::Any))
            .build(merge),
    );
    ctx.declare_func(
        "toset",
        FuncDef::builder().param(P::array_of(P::Any)).build(toset),
    );
    ctx.declare_func(
        "tolist",
        FuncDef::builder().param(P::array_of(P::Any)).build(tolist),
    );
    ctx.declare_func("lower", FuncDef::builder().param(s()).build(lower));
    ctx.declare_func("upper", FuncDef::builder().param(s()).build(upper));
    ctx.declare_func("trimspace", FuncDef::builder().param(s()).build(trimspace));
    ctx.declare_func(
        "replace",
        FuncDef::builder().params([s(), s(), s()]).build(replace),
    );
    ctx.declare_func(
        "length",
        FuncDef::builder()
            .param(P::one_of([
                P::String,
                P::array_of(P::Any),
                P::object_of(P::Any),
            ]))
            .build(length),
    );
    ctx.declare_func(
        "contains",
        FuncDef::builder()
            .param(P::array_of(P::Any))
            .param(P::Any)
            .build(contains),
    );
    ctx.declare_func(
        "keys",
        FuncDef::builder().param(P::object_of(P::Any)).build(keys),
    );
    ctx.declare_func(
        "values",
        FuncDef::builder().param(P::object_of(P::Any)).build(values),
    );
    ctx.declare_func(
        "coalesce",
        FuncDef::builder().variadic_param(P::Any).build(coalesce),
    );
    ctx.declare_func(
        "base64encode",
        FuncDef::builder().param(s()).build(base64encode),
    );
    ctx.declare_func(
        "base64decode",
        FuncDef::builder().param(s()).build(base64decode),
    );
    ctx.declare_func(
        "jsonencode",
        FuncDef::builder().param(P::Any).build(jsonencode),
    );
    ctx.declare_func(
        "jsondecode",
        FuncDef::builder().param(s()).build(jsondecode),
    );
    ctx.declare_func("sha256", FuncDef::builder().param(s()).build(sha256));
    ctx.declare_func(
        "tostring",
        FuncDef::builder()
            .param(P::one_of([P::String, P::Number, P::Bool]))
            .build(tostring),
    );
}

fn str_arg(args: &FuncArgs, i: usize) -> Result<&str, String> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("argument {} must be a string", i + 1))
}

fn file(args: FuncArgs) -> Result<Value, String> {
    let rel = str_arg(&args, 0)?;
    if rel.contains(UNKNOWN) {
        return Ok(Value::from(UNKNOWN));
    }
    let base = BASE_DIR.with(|b| b.borrow().clone());
    let Some(base) = base else {
        return Ok(Value::from(UNKNOWN));
    };
    let path = base.join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Value::from)
            .map_err(|_| format!("file {} is not valid UTF-8", path.display())),
        Err(e) => Err(format!("cannot read file {}: {e}", path.display())),
    }
}

fn env(args: FuncArgs) -> Result<Value, String> {
    let name = str_arg(&args, 0)?;
    match std::env::var(name) {
        Ok(v) => Ok(Value::from(v)),
        Err(_) => match args.get(1).and_then(Value::as_str) {
            Some(default) => Ok(Value::from(default)),
            None => Err(format!(
                "environment variable {name} is not set (give a default as the second argument)"
            )),
        },
    }
}

fn display(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".into()),
        other => Ok(hcl::format::to_string(other).unwrap_or_default()),
    }
}

fn format(args: FuncArgs) -> Result<Value, String> {
    let spec = str_arg(&args, 0)?;
    let mut out = String::new();
    let mut next = 1;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars
            .next()
            .ok_or("format string ends with a lone %".to_string())?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .get(next)
            .ok_or_else(|| format!("format string needs more than {} arguments", next - 1))?;
        next += 1;
        match verb {
            's' | 'v' => out.push_str(&display(arg)?),
            'd' => match arg {
                Value::Number(n) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
                _ => return Err(format!("%d needs an integer, got {}", display(arg)?)),
            },
            'q' => out.push_str(&serde_json::to_string(&display(arg)?).unwrap_or_default()),
            other => return Err(format!("unsupported format verb %{other}")),
        }
    }
    if next < args.len() {
        return Err(format!(
            "format string uses {} arguments but {} were given",
            next - 1,
            args.len() - 1
        ));
    }
    Ok(Value::from(out))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let sep = str_arg(&args, 0)?;
    let list = args
        .get(1)
        .and_then(Value::as_array)
        .ok_or("argument 2 must be a list")?;
    let parts: Result<Vec<String>, String> = list.iter().map(display).collect();
    Ok(Value::from(parts?.join(sep)))
}

fn split(args: FuncArgs) -> Result<Value, String> {
    let sep = str_arg(&args, 0)?;
    let s = str_arg(&args, 1)?;
    if sep.is_empty() {
        return Err("the separator must not be empty".into());
    }
    Ok(Value::Array(s.split(sep).map(Value::from).collect()))
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for v in args.iter() {
        if let Some(a) = v.as_array() {
            out.extend(a.iter().cloned());
        }
    }
    Ok(Value::Array(out))
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    let map = args
        .first()
        .and_then(Value::as_object)
        .ok_or("argument 1 must be a map")?;
    let key = str_arg(&args, 1)?;
    match map.get(key) {
        Some(v) => Ok(v.clone()),
        None => args
            .get(2)
            .cloned()
            .ok_or_else(|| format!("key {key:?} not found and no default given")),
    }
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for v in args.iter() {
        if let Some(o) = v.as_object() {
            for (k, v) in o {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

fn toset(args: FuncArgs) -> Result<Value, String> {
    let list = args
        .first()
        .and_then(Value::as_array)
        .ok_or("argument must be a list")?;
    let mut out: Vec<Value> = Vec::new();
    for v in list {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}

fn tolist(args: FuncArgs) -> Result<Value, String> {
    Ok(args.first().cloned().unwrap_or(Value::Array(Vec::new())))
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(str_arg(&args, 0)?.to_lowercase()))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(str_arg(&args, 0)?.to_uppercase()))
}

fn trimspace(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(str_arg(&args, 0)?.trim()))
}

fn replace(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    let from = str_arg(&args, 1)?;
    let to = str_arg(&args, 2)?;
    if from.is_empty() {
        return Err("the substring to replace must not be empty".into());
    }
    Ok(Value::from(s.replace(from, to)))
}

fn length(args: FuncArgs) -> Result<Value, String> {
    let n = match args.first() {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) => o.len(),
        _ => return Err("length needs a string, list or map".into()),
    };
    Ok(Value::from(n as u64))
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    let list = args
        .first()
        .and_then(Value::as_array)
        .ok_or("argument 1 must be a list")?;
    let item = args.get(1).ok_or("argument 2 is missing")?;
    Ok(Value::Bool(list.contains(item)))
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    let map = args
        .first()
        .and_then(Value::as_object)
        .ok_or("argument must be a map")?;
    let mut k: Vec<&String> = map.keys().collect();
    k.sort();
    Ok(Value::Array(
        k.into_iter().map(|s| Value::from(s.as_str())).collect(),
    ))
}

fn values(args: FuncArgs) -> Result<Value, String> {
    let map = args
        .first()
        .and_then(Value::as_object)
        .ok_or("argument must be a map")?;
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Ok(Value::Array(
        entries.into_iter().map(|(_, v)| v.clone()).collect(),
    ))
}

fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty argument".to_string())
}

fn base64encode(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(str_arg(&args, 0)?),
    ))
}

fn base64decode(args: FuncArgs) -> Result<Value, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(str_arg(&args, 0)?)
        .map_err(|e| format!("invalid base64: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| "the decoded bytes are not valid UTF-8".to_string())
}

fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    let v = args.first().ok_or("argument is missing")?;
    let json: serde_json::Value =
        serde_json::to_value(v).map_err(|e| format!("cannot encode as JSON: {e}"))?;
    Ok(Value::from(json.to_string()))
}

fn jsondecode(args: FuncArgs) -> Result<Value, String> {
    let json: serde_json::Value =
        serde_json::from_str(str_arg(&args, 0)?).map_err(|e| format!("invalid JSON: {e}"))?;
    hcl::to_value(json).map_err(|e| format!("cannot convert JSON: {e}"))
}

fn sha256(args: FuncArgs) -> Result<Value, String> {
    let digest = sha2::Sha256::digest(str_arg(&args, 0)?.as_bytes());
    Ok(Value::from(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ))
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    display(args.first().ok_or("argument is missing")?).map(Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(src: &str) -> Result<Value, String> {
        let mut ctx = Context::new();
        declare_all(&mut ctx);
        let expr: hcl::Expression = src.parse().map_err(|e| format!("{e}"))?;
        expr.evaluate(&ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn string_functions() {
        assert_eq!(eval(r#"lower("ABC")"#), Ok(Value::from("abc")));
        assert_eq!(eval(r#"upper("abc")"#), Ok(Value::from("ABC")));
        assert_eq!(eval(r#"trimspace("  a b \n")"#), Ok(Value::from("a b")));
        assert_eq!(eval(r#"join(",", ["a", "b"])"#), Ok(Value::from("a,b")));
        assert_eq!(
            eval(r#"split(":", "a:b")"#),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            eval(r#"replace("a-b-c", "-", "/")"#),
            Ok(Value::from("a/b/c"))
        );
        assert_eq!(
            eval(r#"format("%s:%d %q %%", "h", 5000, "x")"#),
            Ok(Value::from("h:5000 \"x\" %"))
        );
        assert!(eval(r#"format("%s %s", "a")"#).is_err());
        assert!(eval(r#"format("%d", "a")"#).is_err());
    }

    #[test]
    fn collection_functions() {
        assert_eq!(
            eval(r#"concat(["a"], ["b", "c"])"#),
            Ok(Value::Array(vec!["a".into(), "b".into(), "c".into()]))
        );
        assert_eq!(
            eval(r#"toset(["a", "b", "a"])"#),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
        assert_eq!(eval(r#"lookup({a = 1}, "a")"#), Ok(Value::from(1)));
        assert_eq!(eval(r#"lookup({a = 1}, "b", 2)"#), Ok(Value::from(2)));
        assert!(eval(r#"lookup({a = 1}, "b")"#).is_err());
        assert_eq!(
            eval(r#"merge({a = 1, b = 1}, {b = 2})"#).map(|v| v.to_string()),
            eval(r#"{a = 1, b = 2}"#).map(|v| v.to_string())
        );
        assert_eq!(eval(r#"length([1, 2, 3])"#), Ok(Value::from(3)));
        assert_eq!(eval(r#"contains(["a"], "a")"#), Ok(Value::Bool(true)));
        assert_eq!(
            eval(r#"keys({b = 1, a = 2})"#),
            Ok(Value::Array(vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn encoding_functions() {
        assert_eq!(eval(r#"base64encode("u:p")"#), Ok(Value::from("dTpw")));
        assert_eq!(eval(r#"base64decode("dTpw")"#), Ok(Value::from("u:p")));
        assert_eq!(
            eval(r#"jsonencode({a = [1, "x"]})"#),
            Ok(Value::from(r#"{"a":[1,"x"]}"#))
        );
        assert_eq!(
            eval(r#"sha256("abc")"#),
            Ok(Value::from(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
    }

    #[test]
    fn env_and_file() {
        assert_eq!(
            eval(r#"env("MIRRORPLAN_SURELY_UNSET_VAR", "dflt")"#),
            Ok(Value::from("dflt"))
        );
        assert!(eval(r#"env("MIRRORPLAN_SURELY_UNSET_VAR")"#).is_err());
        set_file_base(None);
        assert_eq!(eval(r#"file("x")"#), Ok(Value::from(UNKNOWN)));
        let dir = std::env::temp_dir().join(format!("mp-fn-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .ok();
        std::fs::write(dir.join("f.txt"), "hello").ok();
        set_file_base(Some(dir.clone()));
        assert_eq!(eval(r#"file("f.txt")"#), Ok(Value::from("hello")));
        assert!(eval(r#"file("missing.txt")"#).is_err());
        set_file_base(None);
        std::fs::remove_dir_all(&dir).ok();
    }
}
