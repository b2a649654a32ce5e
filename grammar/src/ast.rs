//! The syntax tree of one `.adm` file. Every node carries its span.
//!
//! The tree is what the source says, nothing resolved: names are text, values are literals.
//! Later stages (resolve, check) give them meaning.

use std::fmt;

pub use smol_str::SmolStr;

use crate::diagnostic::Span;

/// One parsed file.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SourceFile {
    pub items: Vec<Item>,
}

/// A name as written, with its place. Names of up to 23 bytes are stored inline: a file's tree
/// holds several per item, and a heap allocation each would be most of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Name {
    pub text: SmolStr,
    pub span: Span,
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
    /// The `///` lines right above the item, without the slashes (one entry per line).
    pub doc: Vec<String>,
}

impl Item {
    /// The name the item defines, if it defines one.
    pub fn name(&self) -> Option<&Name> {
        match &self.kind {
            ItemKind::App(a) => Some(&a.name),
            ItemKind::Service(s) => Some(&s.name),
            ItemKind::Group(g) => Some(&g.name),
            ItemKind::Call(_) | ItemKind::Error => None,
            ItemKind::Kind(k) => Some(&k.name),
            ItemKind::Enum(e) => Some(&e.name),
            ItemKind::Policy(p) => Some(&p.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemKind {
    App(App),
    Service(Service),
    Group(Group),
    Call(Call),
    Kind(KindDecl),
    Enum(EnumDecl),
    /// Boxed: a policy is the largest item, and a file holds many more of the others.
    Policy(Box<Policy>),
    /// Text that did not parse as an item; its errors are already reported.
    Error,
}

/// `app NAME`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub name: Name,
}

/// `service NAME { field: value, … }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: Name,
    pub fields: Vec<Field>,
}

/// `group NAME = [a, b]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: Name,
    pub members: Vec<Name>,
}

/// `call SRC -> DST { field: value, … }`; `fields` is `None` without braces. An end is a service,
/// or `external` to describe a service's implicit external edge (`*` parses, to be reported).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub from: Endpoint,
    pub to: Endpoint,
    pub fields: Option<Vec<Field>>,
}

/// `kind NAME(param: type = default, …) { property: value, … }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindDecl {
    pub name: Name,
    pub params: Vec<Param>,
    pub properties: Option<Vec<Field>>,
}

/// `enum NAME { a, b }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumDecl {
    pub name: Name,
    pub variants: Vec<Name>,
}

/// `policy NAME = KIND(arg: value, …) on SELECTOR, … [at SIDE]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: Name,
    pub kind: Name,
    pub args: Vec<Field>,
    /// Span of the `(…)` argument list, parentheses included.
    pub args_span: Span,
    pub selectors: Vec<Selector>,
    pub at: Option<SidePin>,
}

/// `name: value`: a field of a service or call, a kind property, or a policy argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Name,
    pub value: Value,
    pub span: Span,
}

/// A parameter of a kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: Name,
    pub ty: TypeExpr,
    pub default: Option<Value>,
    pub span: Span,
}

/// A type as written: `int`, `lb`, `list<service>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr {
    Named(Name),
    List(Box<TypeExpr>, Span),
}

impl TypeExpr {
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Named(n) => n.span,
            TypeExpr::List(_, span) => *span,
        }
    }
}

impl fmt::Display for TypeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeExpr::Named(n) => f.write_str(&n.text),
            TypeExpr::List(t, _) => write!(f, "list<{t}>"),
        }
    }
}

/// The side a policy is pinned to by `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Ingress,
    Egress,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Ingress => "ingress",
            Side::Egress => "egress",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `at ingress` / `at egress`, with the span of the whole clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SidePin {
    pub side: Side,
    pub span: Span,
}

/// `SRC -> DST`, `SRC -> DST.M` or `SRC -> DST.{M1, M2}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub from: Endpoint,
    pub to: Endpoint,
    pub methods: Option<Vec<Name>>,
    pub span: Span,
}

/// One end of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `*`: any service.
    Any(Span),
    /// `external`: outside the mesh.
    External(Span),
    /// A service or group.
    Name(Name),
}

impl Endpoint {
    pub fn span(&self) -> Span {
        match self {
            Endpoint::Any(s) | Endpoint::External(s) => *s,
            Endpoint::Name(n) => n.span,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Any(_) => f.write_str("*"),
            Endpoint::External(_) => f.write_str("external"),
            Endpoint::Name(n) => f.write_str(&n.text),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Int(u64),
    Str(String),
    Bool(bool),
    Duration(DurationLit),
    Rate(RateLit),
    Percent(PercentLit),
    Size(SizeLit),
    /// A bare name: an enum value, a service, a method, a property word such as `either`.
    Name(SmolStr),
    List(Vec<Value>),
    /// `header("x-user")` or `header(name)`: a name applied to values. Boxed, being rare, so
    /// that every other value stays small.
    Apply(Box<Application>),
    /// A value that did not parse; already reported.
    Error,
}

/// `header("x-user")`: a name applied to values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    pub name: Name,
    pub args: Vec<Value>,
}

/// Units of durations and of the period of rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeUnit {
    Micros,
    Millis,
    Seconds,
    Minutes,
    Hours,
}

impl TimeUnit {
    pub fn from_suffix(s: &str) -> Option<TimeUnit> {
        Some(match s {
            "us" => TimeUnit::Micros,
            "ms" => TimeUnit::Millis,
            "s" => TimeUnit::Seconds,
            "m" => TimeUnit::Minutes,
            "h" => TimeUnit::Hours,
            _ => return None,
        })
    }

    pub fn suffix(self) -> &'static str {
        match self {
            TimeUnit::Micros => "us",
            TimeUnit::Millis => "ms",
            TimeUnit::Seconds => "s",
            TimeUnit::Minutes => "m",
            TimeUnit::Hours => "h",
        }
    }

    pub fn micros(self) -> u64 {
        match self {
            TimeUnit::Micros => 1,
            TimeUnit::Millis => 1_000,
            TimeUnit::Seconds => 1_000_000,
            TimeUnit::Minutes => 60_000_000,
            TimeUnit::Hours => 3_600_000_000,
        }
    }
}

/// `250ms`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DurationLit {
    pub value: u64,
    pub unit: TimeUnit,
}

impl DurationLit {
    /// The canonical value; `None` on overflow (the lexer rejects those).
    pub fn micros(self) -> Option<u64> {
        self.value.checked_mul(self.unit.micros())
    }
}

impl fmt::Display for DurationLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.value, self.unit.suffix())
    }
}

/// `100/s`: `value` requests per one `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLit {
    pub value: u64,
    pub per: TimeUnit,
}

impl RateLit {
    /// Requests per second.
    pub fn per_second(self) -> f64 {
        self.value as f64 * 1e6 / self.per.micros() as f64
    }
}

impl fmt::Display for RateLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.value, self.per.suffix())
    }
}

/// `12.5%` is `units: 125, decimals: 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PercentLit {
    pub units: u64,
    pub decimals: u8,
}

impl PercentLit {
    /// The fraction of one: `12.5%` → 0.125.
    pub fn fraction(self) -> f64 {
        self.units as f64 / 10f64.powi(i32::from(self.decimals)) / 100.0
    }
}

impl fmt::Display for PercentLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = usize::from(self.decimals);
        if d == 0 {
            return write!(f, "{}%", self.units);
        }
        let digits = format!("{:0>width$}", self.units, width = d + 1);
        let (whole, frac) = digits.split_at(digits.len() - d);
        write!(f, "{whole}.{frac}%")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SizeUnit {
    Bytes,
    Kilobytes,
    Megabytes,
    Gigabytes,
}

impl SizeUnit {
    pub fn from_suffix(s: &str) -> Option<SizeUnit> {
        Some(match s {
            "B" => SizeUnit::Bytes,
            "KB" => SizeUnit::Kilobytes,
            "MB" => SizeUnit::Megabytes,
            "GB" => SizeUnit::Gigabytes,
            _ => return None,
        })
    }

    pub fn suffix(self) -> &'static str {
        match self {
            SizeUnit::Bytes => "B",
            SizeUnit::Kilobytes => "KB",
            SizeUnit::Megabytes => "MB",
            SizeUnit::Gigabytes => "GB",
        }
    }

    /// Binary multiples: 1KB = 1024 bytes.
    pub fn bytes(self) -> u64 {
        match self {
            SizeUnit::Bytes => 1,
            SizeUnit::Kilobytes => 1 << 10,
            SizeUnit::Megabytes => 1 << 20,
            SizeUnit::Gigabytes => 1 << 30,
        }
    }
}

/// `4KB`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SizeLit {
    pub value: u64,
    pub unit: SizeUnit,
}

impl SizeLit {
    pub fn bytes(self) -> Option<u64> {
        self.value.checked_mul(self.unit.bytes())
    }
}

impl fmt::Display for SizeLit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.value, self.unit.suffix())
    }
}
