//! The names a program defines, in their namespaces.
//!
//! Services and groups share one namespace; kinds, types (enums) and policies have one each.
//! A call's methods are local to the call.

use std::collections::BTreeMap;

use adm_syntax::ast::{ItemKind, SmolStr, SourceFile};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DefKind {
    Service,
    Group,
    Kind,
    Enum,
    Policy,
}

impl DefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefKind::Service => "service",
            DefKind::Group => "group",
            DefKind::Kind => "kind",
            DefKind::Enum => "enum",
            DefKind::Policy => "policy",
        }
    }

    pub fn namespace(self) -> Namespace {
        match self {
            DefKind::Service | DefKind::Group => Namespace::Service,
            DefKind::Kind => Namespace::Kind,
            DefKind::Enum => Namespace::Type,
            DefKind::Policy => Namespace::Policy,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    Service,
    Kind,
    Type,
    Policy,
}

/// Where a name is defined: the file's position in the program and the item's in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefSite {
    pub file: u32,
    pub item: u32,
    pub kind: DefKind,
}

/// The names one file defines, without positions: (name, kind, item index).
pub fn file_defs(file: &SourceFile) -> Vec<(SmolStr, DefKind, u32)> {
    let mut out = Vec::new();
    for (i, item) in file.items.iter().enumerate() {
        let kind = match &item.kind {
            ItemKind::Service(_) => DefKind::Service,
            ItemKind::Group(_) => DefKind::Group,
            ItemKind::Kind(_) => DefKind::Kind,
            ItemKind::Enum(_) => DefKind::Enum,
            ItemKind::Policy(_) => DefKind::Policy,
            ItemKind::App(_) | ItemKind::Call(_) | ItemKind::Error => continue,
        };
        if let Some(name) = item.name() {
            out.push((name.text.clone(), kind, i as u32));
        }
    }
    out
}

/// Every name of the program. Each name maps to all its definitions in program order; the first
/// is the one that counts, the others are duplicates (reported where they stand).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Symbols {
    pub services: BTreeMap<SmolStr, Vec<DefSite>>,
    pub kinds: BTreeMap<SmolStr, Vec<DefSite>>,
    pub types: BTreeMap<SmolStr, Vec<DefSite>>,
    pub policies: BTreeMap<SmolStr, Vec<DefSite>>,
}

/// Built-in type names: an enum may not take one.
pub const BUILTIN_TYPES: &[&str] =
    &["int", "bool", "string", "duration", "rate", "percent", "size", "service", "method", "list"];

impl Symbols {
    pub fn add(&mut self, name: &str, site: DefSite) {
        // Nearly every name is defined once: its list starts with room for one.
        self.namespace_mut(site.kind.namespace())
            .entry(SmolStr::new(name))
            .or_insert_with(|| Vec::with_capacity(1))
            .push(site);
    }

    fn namespace_mut(&mut self, ns: Namespace) -> &mut BTreeMap<SmolStr, Vec<DefSite>> {
        match ns {
            Namespace::Service => &mut self.services,
            Namespace::Kind => &mut self.kinds,
            Namespace::Type => &mut self.types,
            Namespace::Policy => &mut self.policies,
        }
    }

    pub fn namespace(&self, ns: Namespace) -> &BTreeMap<SmolStr, Vec<DefSite>> {
        match ns {
            Namespace::Service => &self.services,
            Namespace::Kind => &self.kinds,
            Namespace::Type => &self.types,
            Namespace::Policy => &self.policies,
        }
    }

    /// The definition that counts.
    pub fn get(&self, ns: Namespace, name: &str) -> Option<DefSite> {
        self.namespace(ns).get(name).and_then(|sites| sites.first()).copied()
    }

    /// The service or group of that name.
    pub fn service_like(&self, name: &str) -> Option<DefKind> {
        self.get(Namespace::Service, name).map(|s| s.kind)
    }

    pub fn names(&self, ns: Namespace) -> impl Iterator<Item = &str> {
        self.namespace(ns).keys().map(SmolStr::as_str)
    }

    /// Names of one kind only (services without groups, say), for suggestions of the right sort.
    pub fn names_of(&self, kind: DefKind) -> impl Iterator<Item = &str> {
        self.namespace(kind.namespace())
            .iter()
            .filter(move |(_, sites)| sites.first().is_some_and(|s| s.kind == kind))
            .map(|(n, _)| n.as_str())
    }
}
