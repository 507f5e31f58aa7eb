//! Two versions of a study file compared by what they mean, not by their bytes: a comment,
//! blank line, key order or quoting style changes the text (and its hash, which stays the
//! study's provenance) but not the study; a changed value, key, table or prompt does.

use toml::{Table, Value};

use super::Prompt;

/// The places where `now` means something other than `stored`, each as
/// `path: old → new` (`policies[0].decoding.temperature: 0.9 → 0.7`); empty when the
/// two differ only in comments and layout. A text that is not TOML differs wholly.
pub fn meaning_changes(stored: &str, now: &str) -> Vec<String> {
    match (stored.parse::<Table>(), now.parse::<Table>()) {
        (Ok(a), Ok(b)) => {
            let mut out = Vec::new();
            diff_tables("", &a, &b, &mut out);
            out
        }
        (Err(e), _) => vec![format!("the stored study text is not TOML ({})", first_line(&e.to_string()))],
        (_, Err(e)) => vec![format!("the study file is not TOML ({})", first_line(&e.to_string()))],
    }
}

/// The `name` a study text declares, read as leniently as TOML allows (an edit may have
/// broken the rest of the study): what finds its default database.
pub fn declared_name(text: &str) -> Option<String> {
    if let Ok(table) = text.parse::<Table>() {
        return table.get("name")?.as_str().map(str::to_string);
    }
    // Not TOML as a whole: the top-level `name = "…"` line, read on its own.
    let line = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with('['))
        .find(|l| l.strip_prefix("name").is_some_and(|rest| rest.trim_start().starts_with('=')))?;
    line.parse::<Table>().ok()?.get("name")?.as_str().map(str::to_string)
}

/// The prompts whose id, text or tags differ between the stored list and the file's (a
/// `prompts_file` edited beside an unchanged study file), as `prompt ID: what`.
pub fn prompt_changes(stored: &[Prompt], now: &[Prompt]) -> Vec<String> {
    let mut out = Vec::new();
    for p in stored {
        match now.iter().find(|q| q.id == p.id) {
            None => out.push(format!("prompt {}: removed", p.id)),
            Some(q) if q.text != p.text => out.push(format!("prompt {}: text changed", p.id)),
            Some(q) if q.tags != p.tags => {
                out.push(format!("prompt {}: tags {:?} → {:?}", p.id, p.tags, q.tags));
            }
            Some(_) => {}
        }
    }
    for q in now.iter().filter(|q| !stored.iter().any(|p| p.id == q.id)) {
        out.push(format!("prompt {}: added", q.id));
    }
    let same_ids = stored.len() == now.len() && stored.iter().zip(now).all(|(p, q)| p.id == q.id);
    if out.is_empty() && !same_ids {
        out.push("prompts: reordered".into());
    }
    out
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Keys that say where a server policy's server runs and how hard ualign may push it,
/// not what it samples: a server moved to another host, a new key variable or other
/// limits are the same study (each candidate records the URL that made it).
const OPERATIONAL: [&str; 5] = ["base_url", "api_key_env", "concurrency", "timeout_s", "retries"];

fn operational(path: &str, key: &str) -> bool {
    let policy = path.strip_prefix("policies[").and_then(|r| r.strip_suffix(']'));
    policy.is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit())) && OPERATIONAL.contains(&key)
}

fn diff_tables(path: &str, a: &Table, b: &Table, out: &mut Vec<String>) {
    let (a, b): (Table, Table) = {
        let keep =
            |t: &Table| t.iter().filter(|(k, _)| !operational(path, k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        (keep(a), keep(b))
    };
    let (a, b) = (&a, &b);
    for (k, va) in a {
        match b.get(k) {
            Some(vb) => diff_values(&join(path, k), va, vb, out),
            None => out.push(format!("{}: {} → (removed)", join(path, k), shown(va))),
        }
    }
    for (k, vb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
        out.push(format!("{}: (absent) → {}", join(path, k), shown(vb)));
    }
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Table(x), Value::Table(y)) => diff_tables(path, x, y, out),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.iter().chain(y).any(|v| v.is_table()) => {
            out.push(format!("{path}: {} entries → {}", x.len(), y.len()));
        }
        _ if a != b => out.push(format!("{path}: {} → {}", shown(a), shown(b))),
        _ => {}
    }
}

/// A value as TOML writes it, shortened to one readable line.
fn shown(v: &Value) -> String {
    let text = match v {
        Value::Table(_) => "{…}".to_string(),
        Value::Array(a) if a.iter().any(Value::is_table) => format!("{} entries", a.len()),
        other => other.to_string(),
    };
    let line = text.replace('\n', "\\n");
    if line.chars().count() > 48 { format!("{}…", line.chars().take(47).collect::<String>()) } else { line }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = "name = \"s\"\ntitle = \"T\"\n\n[[policies]]\nname = \"a\"\npool_size = 4\n[policies.decoding]\ntemperature = 0.9\n";

    #[test]
    fn comments_layout_order_and_quoting_mean_nothing() {
        let edited = "# my pilot\ntitle = 'T'   # shown nowhere\nname = \"s\"\n\n\n[[policies]]\npool_size = 4\nname = \"a\"\n\n[policies.decoding]\ntemperature = 0.90\n";
        assert_eq!(meaning_changes(STUDY, edited), Vec::<String>::new());
        let inline = "name = \"s\"\ntitle = \"T\"\npolicies = [{ name = \"a\", pool_size = 4, decoding = { temperature = 0.9 } }]\n";
        assert_eq!(meaning_changes(STUDY, inline), Vec::<String>::new());
    }

    #[test]
    fn a_change_of_value_key_or_table_is_named_with_its_path() {
        let changed = STUDY.replace("0.9", "0.7").replace("title = \"T\"", "title = \"T\"\ndescription = \"d\"");
        assert_eq!(
            meaning_changes(STUDY, &changed),
            vec![
                "policies[0].decoding.temperature: 0.9 → 0.7".to_string(),
                "description: (absent) → \"d\"".to_string()
            ]
        );
        let more = format!("{STUDY}\n[[policies]]\nname = \"b\"\n");
        assert_eq!(meaning_changes(STUDY, &more), vec!["policies: 1 entries → 2".to_string()]);
        // 1 and 1.0 are different TOML values: counted as a change, never silently equal.
        assert_eq!(meaning_changes(STUDY, &STUDY.replace("pool_size = 4", "pool_size = 4.0")).len(), 1);
        assert!(meaning_changes(STUDY, "name = ").first().unwrap().starts_with("the study file is not TOML"));
    }

    #[test]
    fn where_a_server_runs_and_how_hard_it_is_pushed_is_not_a_change_of_study() {
        let server = "name = \"s\"\n[[policies]]\nname = \"a\"\nsource = \"server\"\nbase_url = \"http://a:1/v1\"\nmodel = \"m\"\nconcurrency = 4\n";
        let moved = server
            .replace("http://a:1/v1", "http://b:2/v1")
            .replace("concurrency = 4", "concurrency = 16\nretries = 9");
        assert_eq!(meaning_changes(server, &moved), Vec::<String>::new());
        assert_eq!(meaning_changes(server, &server.replace("model = \"m\"", "model = \"n\"")).len(), 1, "the model is");
        // Only a policy's own keys: a top-level `retries` would be a change.
        assert_eq!(meaning_changes(server, &format!("retries = 1\n{server}")).len(), 1);
    }

    #[test]
    fn a_broken_file_still_declares_its_name() {
        assert_eq!(declared_name("name = \"s\"\n[[blocks]\n").as_deref(), Some("s"));
        assert_eq!(declared_name("title = 1\nname = 's' # x\n").as_deref(), Some("s"));
        assert_eq!(declared_name("[x]\nname = \"inner\"\n=").as_deref(), None);
        assert_eq!(declared_name("names = \"s\"\n=").as_deref(), None);
    }

    #[test]
    fn prompts_compare_by_id_text_tags_and_order() {
        let p = |id: &str, text: &str| Prompt { id: id.into(), text: text.into(), tags: vec![] };
        let stored = vec![p("a", "x"), p("b", "y")];
        assert!(prompt_changes(&stored, &stored.clone()).is_empty());
        assert_eq!(prompt_changes(&stored, &[p("b", "y"), p("a", "x")]), vec!["prompts: reordered".to_string()]);
        assert_eq!(
            prompt_changes(&stored, &[p("a", "x!"), p("c", "z")]),
            vec!["prompt a: text changed".to_string(), "prompt b: removed".into(), "prompt c: added".into()]
        );
    }
}
