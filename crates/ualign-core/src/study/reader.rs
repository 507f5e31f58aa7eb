//! A typed reader over TOML's span-keeping parse tree. Unlike a serde derive, which stops
//! at the first problem, it records every wrong type, missing field and unknown key with
//! its location, and lets validation carry on with what was readable.

use std::cell::RefCell;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostics, Severity, SourceMap};

/// Where diagnostics go while one file is read.
pub(crate) struct Cx<'s> {
    pub(crate) src: &'s SourceMap<'s>,
    pub(crate) diags: Diagnostics,
}

impl Cx<'_> {
    pub(crate) fn error(&mut self, span: Range<usize>, path: &str, message: impl Into<String>) {
        let d = self.src.diag(Severity::Error, span, path, message.into());
        self.diags.push(d);
    }

    pub(crate) fn warning(&mut self, span: Range<usize>, path: &str, message: impl Into<String>) {
        let d = self.src.diag(Severity::Warning, span, path, message.into());
        self.diags.push(d);
    }
}

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// A table being read: remembers which keys were asked for, so the rest are unknown keys.
pub(crate) struct TableReader<'a, 'i> {
    table: &'a DeTable<'i>,
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    asked: RefCell<Vec<&'static str>>,
}

impl<'a, 'i> TableReader<'a, 'i> {
    pub(crate) fn new(table: &'a DeTable<'i>, span: Range<usize>, path: String) -> Self {
        Self { table, span, path, asked: RefCell::new(Vec::new()) }
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn get(&self, key: &'static str) -> Option<&'a Value<'i>> {
        self.asked.borrow_mut().push(key);
        self.table.get(key)
    }

    pub(crate) fn has(&self, key: &'static str) -> bool {
        self.asked.borrow_mut().push(key);
        self.table.contains_key(key)
    }

    /// Marks keys as known without reading them (keys of a design that could not be told).
    pub(crate) fn allow(&self, keys: &[&'static str]) {
        self.asked.borrow_mut().extend_from_slice(keys);
    }

    /// Span of a key's value, or of the table itself when the key is absent.
    pub(crate) fn span_of(&self, key: &str) -> Range<usize> {
        self.table.get(key).map_or_else(|| self.span.clone(), |v| v.span())
    }

    fn wrong_type(&self, cx: &mut Cx, key: &str, v: &Value<'_>, want: &str) {
        cx.error(v.span(), &self.path_of(key), not_a(want, v));
    }

    fn missing(&self, cx: &mut Cx, key: &str, want: &str) {
        let at = if self.path.is_empty() { "the file".to_string() } else { format!("`{}`", self.path) };
        cx.error(
            self.span.start..self.span.start,
            &self.path_of(key),
            format!("missing: add {want} `{key} = ...` to {at}"),
        );
    }

    pub(crate) fn string(&self, cx: &mut Cx, key: &'static str) -> Option<String> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(cx, key, v, "a string");
                None
            }
        }
    }

    pub(crate) fn required_string(&self, cx: &mut Cx, key: &'static str) -> Option<String> {
        if !self.table.contains_key(key) {
            self.asked.borrow_mut().push(key);
            self.missing(cx, key, "a string");
            return None;
        }
        self.string(cx, key)
    }

    pub(crate) fn integer(&self, cx: &mut Cx, key: &'static str) -> Option<(i64, Range<usize>)> {
        let v = self.get(key)?;
        match value_integer(v) {
            Some(i) => Some((i, v.span())),
            None => {
                self.wrong_type(cx, key, v, "an integer");
                None
            }
        }
    }

    pub(crate) fn required_integer(&self, cx: &mut Cx, key: &'static str) -> Option<(i64, Range<usize>)> {
        if !self.table.contains_key(key) {
            self.asked.borrow_mut().push(key);
            self.missing(cx, key, "an integer");
            return None;
        }
        self.integer(cx, key)
    }

    /// A number: floats and integers both accepted.
    pub(crate) fn number(&self, cx: &mut Cx, key: &'static str) -> Option<(f64, Range<usize>)> {
        let v = self.get(key)?;
        let n = match v.get_ref() {
            DeValue::Float(f) => parse_float(f.as_str()),
            DeValue::Integer(_) => value_integer(v).map(|i| i as f64),
            _ => None,
        };
        match n {
            Some(n) => Some((n, v.span())),
            None => {
                self.wrong_type(cx, key, v, "a number");
                None
            }
        }
    }

    pub(crate) fn boolean(&self, cx: &mut Cx, key: &'static str) -> Option<bool> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(cx, key, v, "true or false");
                None
            }
        }
    }

    /// An array whose elements are handed back with their spans and paths.
    pub(crate) fn array(&self, cx: &mut Cx, key: &'static str) -> Option<Vec<(&'a Value<'i>, String)>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Array(items) => {
                let base = self.path_of(key);
                Some(items.iter().enumerate().map(|(i, item)| (item, format!("{base}[{i}]"))).collect())
            }
            _ => {
                self.wrong_type(cx, key, v, "an array");
                None
            }
        }
    }

    pub(crate) fn string_list(&self, cx: &mut Cx, key: &'static str) -> Option<Vec<(String, Range<usize>)>> {
        let items = self.array(cx, key)?;
        let mut out = Vec::new();
        for (item, path) in items {
            match item.get_ref() {
                DeValue::String(s) => out.push((s.to_string(), item.span())),
                other => cx.error(item.span(), &path, format!("expected a string, found {}", type_name(other))),
            }
        }
        Some(out)
    }

    pub(crate) fn integer_list(&self, cx: &mut Cx, key: &'static str) -> Option<Vec<(i64, Range<usize>, String)>> {
        let items = self.array(cx, key)?;
        let mut out = Vec::new();
        for (item, path) in items {
            match value_integer(item) {
                Some(i) => out.push((i, item.span(), path)),
                None => cx.error(item.span(), &path, not_a("an integer", item)),
            }
        }
        Some(out)
    }

    pub(crate) fn table(&self, cx: &mut Cx, key: &'static str) -> Option<TableReader<'a, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(TableReader::new(t, v.span(), self.path_of(key))),
            _ => {
                self.wrong_type(cx, key, v, "a table");
                None
            }
        }
    }

    /// A table given as JSON (a server request's `extra_body`): its values as TOML holds
    /// them, datetimes as their text, with the table's span.
    pub(crate) fn json_table(
        &self,
        cx: &mut Cx,
        key: &'static str,
    ) -> Option<(serde_json::Map<String, serde_json::Value>, Range<usize>)> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some((table_json(t), v.span())),
            _ => {
                self.wrong_type(cx, key, v, "a table");
                None
            }
        }
    }

    /// `[[key]]` entries (an array of tables).
    pub(crate) fn tables(&self, cx: &mut Cx, key: &'static str) -> Vec<TableReader<'a, 'i>> {
        let Some(items) = self.array(cx, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (item, path) in items {
            match item.get_ref() {
                DeValue::Table(t) => out.push(TableReader::new(t, item.span(), path)),
                other => cx.error(item.span(), &path, format!("expected a table, found {}", type_name(other))),
            }
        }
        out
    }

    /// Reports every key that was never asked for: typos must not pass silently.
    pub(crate) fn finish(self, cx: &mut Cx) {
        let asked = self.asked.borrow().clone();
        for (k, _) in self.table.iter() {
            let name: &str = k.get_ref();
            if asked.contains(&name) {
                continue;
            }
            let hint = closest(name, &asked).map(|c| format!("; did you mean `{c}`?")).unwrap_or_else(|| {
                let mut known: Vec<&str> = asked.clone();
                known.sort_unstable();
                known.dedup();
                format!("; known keys here: {}", known.join(", "))
            });
            cx.error(k.span(), &self.path_of(name), format!("unknown key `{name}`{hint}"));
        }
    }
}

/// Why `v` is not `want`: its type, or, for an integer too large for 64 bits, that.
fn not_a(want: &str, v: &Value<'_>) -> String {
    match v.get_ref() {
        DeValue::Integer(i) if want == "an integer" || want == "a number" => {
            format!("{} is too large (the largest integer here is {})", i.as_str(), i64::MAX)
        }
        other => format!("expected {want}, found {}", type_name(other)),
    }
}

fn table_json(t: &DeTable<'_>) -> serde_json::Map<String, serde_json::Value> {
    t.iter().map(|(k, v)| (k.get_ref().to_string(), value_json(v))).collect()
}

fn value_json(v: &Value<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match v.get_ref() {
        DeValue::String(s) => J::String(s.to_string()),
        DeValue::Integer(_) => value_integer(v).map_or(J::Null, J::from),
        DeValue::Float(f) => parse_float(f.as_str()).map_or(J::Null, J::from),
        DeValue::Boolean(b) => J::Bool(*b),
        DeValue::Datetime(d) => J::String(d.to_string()),
        DeValue::Array(items) => J::Array(items.iter().map(value_json).collect()),
        DeValue::Table(t) => J::Object(table_json(t)),
    }
}

fn value_integer(v: &Value<'_>) -> Option<i64> {
    match v.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok(),
        _ => None,
    }
}

fn parse_float(s: &str) -> Option<f64> {
    s.replace('_', "").parse().ok()
}

/// The one of `known` that `name` is most likely a typo of (a few edits, or a prefix), if
/// any: the "did you mean" of every message that names a key, a policy or a file.
pub fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| {
            let prefix = k.len() >= 4 && (name.starts_with(k) || k.starts_with(name));
            (if prefix { 1 } else { strsim::levenshtein(name, k) }, *k)
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 3) && *d < k.len())
        .min()
        .map(|(_, k)| k)
}
