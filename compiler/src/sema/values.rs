//! Checking a value against a type, and converting it to canonical units.

use std::collections::BTreeMap;

use adm_syntax::ast::{Value, ValueKind};
use adm_syntax::{Diagnostic, FileId};

use super::model::{Ty, TypedValue};
use super::names::{DefKind, Namespace, Symbols};
use super::suggest;

/// What a value may refer to.
pub struct Scope<'a> {
    pub file: FileId,
    pub symbols: &'a Symbols,
    /// Every enum with its variants.
    pub enums: &'a BTreeMap<String, Vec<String>>,
}

fn describe(v: &ValueKind) -> &'static str {
    match v {
        ValueKind::Int(_) => "an integer",
        ValueKind::Str(_) => "a string",
        ValueKind::Bool(_) => "a boolean",
        ValueKind::Duration(_) => "a duration",
        ValueKind::Rate(_) => "a rate",
        ValueKind::Percent(_) => "a percent",
        ValueKind::Size(_) => "a size",
        ValueKind::Name(_) => "a name",
        ValueKind::List(_) => "a list",
        ValueKind::Apply(..) => "an application",
        ValueKind::Error => "an invalid value",
    }
}

fn expected(ty: &Ty) -> String {
    match ty {
        Ty::Int => "an integer".to_string(),
        Ty::Bool => "`true` or `false`".to_string(),
        Ty::String => "a string".to_string(),
        Ty::Duration => "a duration".to_string(),
        Ty::Rate => "a rate".to_string(),
        Ty::Percent => "a percent".to_string(),
        Ty::Size => "a size".to_string(),
        Ty::Service => "a service or group".to_string(),
        Ty::Method => "a method name".to_string(),
        Ty::List(t) => format!("a list of {}", plural(t)),
        Ty::Enum(e) => format!("a value of `{e}`"),
    }
}

fn plural(ty: &Ty) -> String {
    match ty {
        Ty::Int => "integers".to_string(),
        Ty::Bool => "booleans".to_string(),
        Ty::String => "strings".to_string(),
        Ty::Duration => "durations".to_string(),
        Ty::Rate => "rates".to_string(),
        Ty::Percent => "percents".to_string(),
        Ty::Size => "sizes".to_string(),
        Ty::Service => "services".to_string(),
        Ty::Method => "methods".to_string(),
        Ty::List(t) => format!("lists of {}", plural(t)),
        Ty::Enum(e) => format!("`{e}` values"),
    }
}

/// A help line for a value of the wrong type, where the mistake is a common one.
fn mismatch_help(ty: &Ty, v: &ValueKind) -> Option<String> {
    match (ty, v) {
        (Ty::Duration, ValueKind::Int(n)) => Some(format!("durations need a unit, as in `{n}ms` or `{n}s`")),
        (Ty::Rate, ValueKind::Int(n)) => Some(format!("rates need a period, as in `{n}/s`")),
        (Ty::Percent, ValueKind::Int(n)) => Some(format!("percents end in `%`, as in `{n}%`")),
        (Ty::Size, ValueKind::Int(n)) => Some(format!("sizes need a unit, as in `{n}B` or `{n}KB`")),
        (Ty::String, ValueKind::Name(n)) => Some(format!("strings are quoted: `\"{n}\"`")),
        (Ty::List(inner), other) if !matches!(other, ValueKind::List(_)) && !matches!(**inner, Ty::List(_)) => {
            Some("a list is written in brackets, as in `[a, b]`".to_string())
        }
        _ => None,
    }
}

/// Checks `value` against `ty`. Problems are pushed as diagnostics; `None` means the value is
/// unusable (already reported).
pub fn check(ty: &Ty, value: &Value, scope: &Scope<'_>, diags: &mut Vec<Diagnostic>) -> Option<TypedValue> {
    let file = scope.file;
    let wrong = |diags: &mut Vec<Diagnostic>| {
        let mut d = Diagnostic::error(
            "E0200",
            file,
            value.span,
            format!("expected {}, found {}", expected(ty), describe(&value.kind)),
        )
        .with_primary(format!("this should be {}", expected(ty)));
        if let Some(help) = mismatch_help(ty, &value.kind) {
            d = d.with_help(help);
        }
        diags.push(d);
        None
    };
    let typed = match (ty, &value.kind) {
        (_, ValueKind::Error) => return None,
        (Ty::Int, ValueKind::Int(n)) => TypedValue::Int(*n),
        (Ty::Bool, ValueKind::Bool(b)) => TypedValue::Bool(*b),
        (Ty::String, ValueKind::Str(s)) => TypedValue::Str(s.clone()),
        (Ty::Duration, ValueKind::Duration(d)) => TypedValue::Duration(d.micros()?),
        (Ty::Rate, ValueKind::Rate(r)) => {
            if r.value == 0 {
                diags.push(
                    Diagnostic::error("E0204", file, value.span, "a rate of zero")
                        .with_primary("rates must be above zero")
                        .with_help("to refuse all requests, use a `deny` policy"),
                );
                return None;
            }
            TypedValue::Rate(*r)
        }
        (Ty::Percent, ValueKind::Percent(p)) => {
            if p.fraction() > 1.0 {
                diags.push(
                    Diagnostic::error("E0204", file, value.span, format!("`{p}` is over 100%"))
                        .with_primary("a percent of requests is at most 100%"),
                );
                return None;
            }
            TypedValue::Percent(*p)
        }
        (Ty::Size, ValueKind::Size(s)) => TypedValue::Size(s.bytes()?),
        (Ty::Service, ValueKind::Name(n)) => {
            if scope.symbols.service_like(n).is_none() {
                let mut d = Diagnostic::error("E0101", file, value.span, format!("unknown service or group `{n}`"))
                    .with_primary("no service or group has this name");
                if let Some((help, name)) = suggest::help(n, "service", scope.symbols.names(Namespace::Service)) {
                    d = d.with_help(help).with_replacement(name);
                }
                diags.push(d);
                return None;
            }
            TypedValue::Service(n.to_string())
        }
        (Ty::Method, ValueKind::Name(n)) => TypedValue::Method(n.to_string()),
        (Ty::Enum(e), ValueKind::Name(n)) => {
            let variants = scope.enums.get(e).map(Vec::as_slice).unwrap_or_default();
            if !variants.iter().any(|v| v == n) {
                let mut d = Diagnostic::error("E0205", file, value.span, format!("`{n}` is not a value of `{e}`"))
                    .with_primary(format!("expected one of: {}", variants.join(", ")));
                if let Some((help, name)) = suggest::help(n, "value", variants.iter().map(String::as_str)) {
                    d = d.with_help(help).with_replacement(name);
                }
                diags.push(d);
                return None;
            }
            TypedValue::Enum(n.to_string())
        }
        (Ty::List(inner), ValueKind::List(items)) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for item in items {
                match check(inner, item, scope, diags) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            TypedValue::List(out)
        }
        _ => return wrong(diags),
    };
    Some(typed)
}

/// The name of a group used where only services may stand, for messages.
pub fn is_group(symbols: &Symbols, name: &str) -> bool {
    symbols.service_like(name) == Some(DefKind::Group)
}
