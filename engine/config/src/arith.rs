//! Checked arithmetic for expressions.
//!
//! hcl-rs's number operators are not safe on every input: `% 0` panics in
//! every build, integer overflow panics in debug builds and wraps in release
//! builds, and `/ 0` or a float overflow (`1e308 * 10`) make an infinity that
//! trips a debug assertion, and in release builds becomes `null`. So before an
//! expression is evaluated, [`rewrite`] turns each arithmetic operation
//! (`+ - * / %`) into a call of the hidden function [`FUNC`], which computes
//! with explicit checks (not relying on `overflow-checks`) and fails with a
//! message. The failing operation is recorded ([`take_failure`]) so that the
//! diagnostic points at the operation, not at the whole attribute.

use std::cell::RefCell;
use std::ops::Range;

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Number, Value};
use hcl_edit::expr::{BinaryOperator, Expression, FuncCall, FuncName};
use hcl_edit::visit_mut::{self, VisitMut};
use hcl_edit::{Ident, Span};

use crate::functions::is_unknown;
use crate::functions::UNKNOWN;

/// The hidden function that evaluates one arithmetic operation:
/// `FUNC(lhs, rhs, "OP", INDEX)`, INDEX being the operation's place in the
/// span table [`rewrite`] returns.
pub const FUNC: &str = "__mirrorplan_arith";

thread_local! {
    static FAILURE: RefCell<Option<(usize, String)>> = const { RefCell::new(None) };
}

/// The operation that failed in the last evaluation (its index in the span
/// table and the reason), clearing it.
pub fn take_failure() -> Option<(usize, String)> {
    FAILURE.with(|f| f.borrow_mut().take())
}

struct Rewriter {
    spans: Vec<Option<Range<usize>>>,
}

impl VisitMut for Rewriter {
    fn visit_expr_mut(&mut self, node: &mut Expression) {
        visit_mut::visit_expr_mut(self, node);
        let Expression::BinaryOp(op) = node else {
            return;
        };
        let symbol = match op.operator.value() {
            BinaryOperator::Plus => "+",
            BinaryOperator::Minus => "-",
            BinaryOperator::Mul => "*",
            BinaryOperator::Div => "/",
            BinaryOperator::Mod => "%",
            _ => return,
        };
        let index = self.spans.len();
        self.spans.push(op.span());
        let args = vec![
            op.lhs_expr.clone(),
            op.rhs_expr.clone(),
            Expression::from(symbol),
            Expression::from(index as u64),
        ];
        *node = Expression::FuncCall(Box::new(FuncCall::new(
            FuncName::new(Ident::new(FUNC)),
            args.into(),
        )));
    }
}

/// The expression ready for hcl-rs, every arithmetic operation replaced by a
/// checked call, and the span of each operation (by index).
pub fn rewrite(expr: &Expression) -> (hcl::Expression, Vec<Option<Range<usize>>>) {
    let mut e = expr.clone();
    let mut r = Rewriter { spans: Vec::new() };
    r.visit_expr_mut(&mut e);
    (e.into(), r.spans)
}

/// Declares [`FUNC`] in a context.
pub fn declare(ctx: &mut Context) {
    ctx.declare_func(
        FUNC,
        FuncDef::builder()
            .params([
                ParamType::Any,
                ParamType::Any,
                ParamType::String,
                ParamType::Number,
            ])
            .build(arith),
    );
}

fn arith(args: FuncArgs) -> Result<Value, String> {
    let op = args[2].as_str().unwrap_or("?").to_string();
    let index = args[3].as_u64().unwrap_or(u64::MAX) as usize;
    let result = match (&args[0], &args[1]) {
        // a value not known yet (validate) keeps the result unknown
        (l, r) if is_unknown(l) || is_unknown(r) => return Ok(Value::from(UNKNOWN)),
        (Value::Number(l), Value::Number(r)) => checked(&op, l, r).map(Value::Number),
        (l, r) => Err(format!(
            "`{op}` needs two numbers, not {} and {}",
            kind(l),
            kind(r)
        )),
    };
    result.inspect_err(|why| {
        FAILURE.with(|f| *f.borrow_mut() = Some((index, why.clone())));
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `l OP r` with every failure reported: division or modulo by zero, an
/// integer result outside 64 bits, a float result that is not finite.
/// Integers are computed exactly (in 128 bits); a division that does not
/// come out even gives a float, as in HCL.
pub fn checked(op: &str, l: &Number, r: &Number) -> Result<Number, String> {
    if let (Some(a), Some(b)) = (int(l), int(r)) {
        let exact = match op {
            "+" => a.checked_add(b),
            "-" => a.checked_sub(b),
            "*" => a.checked_mul(b),
            "/" if b == 0 => return Err("division by zero".into()),
            "/" if a.checked_rem(b) == Some(0) => a.checked_div(b),
            "/" => None,
            "%" if b == 0 => return Err("modulo by zero (`% 0`)".into()),
            "%" => a.checked_rem(b),
            _ => return Err(format!("`{op}` is not an arithmetic operator")),
        };
        match exact {
            Some(n) => {
                return from_i128(n).ok_or_else(|| {
                    format!("the result of `{op}` does not fit in a 64-bit integer (overflow)")
                })
            }
            // an uneven division: a float
            None if op == "/" => {}
            None => {
                return Err(format!(
                    "the result of `{op}` does not fit in a 64-bit integer (overflow)"
                ))
            }
        }
    }
    let (a, b) = (float(l), float(r));
    let v = match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" if b == 0.0 => return Err("division by zero".into()),
        "/" => a / b,
        "%" if b == 0.0 => return Err("modulo by zero (`% 0`)".into()),
        "%" => a % b,
        _ => return Err(format!("`{op}` is not an arithmetic operator")),
    };
    Number::from_f64(v).ok_or_else(|| {
        format!("the result of `{op}` is too large for a number (overflow to infinity)")
    })
}

fn int(n: &Number) -> Option<i128> {
    if n.is_f64() {
        return None;
    }
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn float(n: &Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

fn from_i128(n: i128) -> Option<Number> {
    if let Ok(v) = i64::try_from(n) {
        return Some(Number::from(v));
    }
    u64::try_from(n).ok().map(Number::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: i64) -> Number {
        Number::from(v)
    }

    fn f(v: f64) -> Number {
        Number::from_f64(v).unwrap_or_else(|| panic!("{v} is not finite"))
    }

    fn err(r: Result<Number, String>) -> String {
        match r {
            Err(e) => e,
            Ok(v) => panic!("expected an error, got {v}"),
        }
    }

    #[test]
    fn integer_operations_are_exact_and_checked() {
        assert_eq!(checked("+", &n(2), &n(3)), Ok(n(5)));
        assert_eq!(checked("-", &n(2), &n(3)), Ok(n(-1)));
        assert_eq!(checked("*", &n(-4), &n(3)), Ok(n(-12)));
        assert_eq!(checked("/", &n(12), &n(4)), Ok(n(3)));
        assert_eq!(checked("%", &n(7), &n(4)), Ok(n(3)));
        // beyond i64 but within u64 is still an integer
        assert_eq!(
            checked("+", &n(i64::MAX), &n(1)),
            Ok(Number::from(1u64 << 63))
        );
        assert!(err(checked("%", &n(7), &n(0))).contains("modulo by zero"));
        assert!(err(checked("/", &n(7), &n(0))).contains("division by zero"));
        assert!(err(checked("*", &n(i64::MAX), &n(i64::MAX))).contains("overflow"));
        assert!(err(checked("+", &Number::from(u64::MAX), &n(1))).contains("overflow"));
        assert!(err(checked("-", &n(i64::MIN), &n(1))).contains("overflow"));
        assert!(err(checked("%", &n(i64::MIN), &n(0))).contains("modulo by zero"));
    }

    #[test]
    fn uneven_division_gives_a_float() {
        assert_eq!(checked("/", &n(7), &n(2)), Ok(f(3.5)));
    }

    #[test]
    fn float_overflow_and_zero_divisors_are_errors() {
        assert!(err(checked("*", &f(1e308), &n(10))).contains("overflow"));
        assert!(err(checked("+", &f(1.7e308), &f(1.7e308))).contains("overflow"));
        assert!(err(checked("/", &f(10.5), &n(0))).contains("division by zero"));
        assert!(err(checked("%", &f(10.5), &n(0))).contains("modulo by zero"));
        assert_eq!(checked("%", &f(10.5), &n(4)), Ok(f(2.5)));
    }
}
