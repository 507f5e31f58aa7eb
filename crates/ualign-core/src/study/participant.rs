//! Which participant ids a study accepts. An id is stored and exported with every answer,
//! so it must never be a name: a study accepts ualign's own pseudonyms (`p-` and ten
//! random letters and digits, given out on the participant's first screen) and ids that
//! match the researcher's `participant_id_pattern` (e.g. Prolific's 24 hex digits), and
//! nothing else typed. An invitation code (`ualign invite`) stands for the pseudonym it
//! was made for.

use rand::Rng;
use sha2::{Digest, Sha256};

use super::Study;

/// Letters and digits of a pseudonym: lowercase, without the easily confused 0/o, 1/l/i.
const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const PSEUDONYM_LEN: usize = 10;

/// A fresh pseudonym: `p-` and 10 random lowercase letters and digits.
pub fn new_pseudonym() -> String {
    let mut rng = rand::rng();
    let s: String = (0..PSEUDONYM_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("p-{s}")
}

/// A fresh invitation code: 12 random letters and digits of the pseudonym alphabet in
/// three groups, such as `k7q2-m9xp-4hta` (about 59 bits; the code itself is never stored).
pub fn new_invitation_code() -> String {
    let mut rng = rand::rng();
    let group = |rng: &mut rand::rngs::ThreadRng| -> String {
        (0..4).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
    };
    format!("{}-{}-{}", group(&mut rng), group(&mut rng), group(&mut rng))
}

/// A typed invitation code in its one form: lowercase, without spaces, with its dashes
/// (typed without them, or with spaces, it is the same code); `None` when it has not the
/// shape of one.
pub fn normal_invitation_code(typed: &str) -> Option<String> {
    let chars: String = typed.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_lowercase();
    (chars.len() == 12 && chars.bytes().all(|b| ALPHABET.contains(&b)))
        .then(|| format!("{}-{}-{}", &chars[0..4], &chars[4..8], &chars[8..12]))
}

/// The stored form of an invitation code: the SHA-256 of its normal form.
pub fn invitation_hash(code: &str) -> String {
    format!("{:x}", Sha256::digest(code.as_bytes()))
}

/// Whether `id` has the shape of a pseudonym [`new_pseudonym`] gives out.
pub fn is_pseudonym(id: &str) -> bool {
    id.strip_prefix("p-").is_some_and(|s| s.len() == PSEUDONYM_LEN && s.bytes().all(|b| ALPHABET.contains(&b)))
}

/// The researcher's pattern for the ids they hand out, matched against the whole id.
#[derive(Debug, Clone)]
pub struct IdPattern {
    source: String,
    regex: regex::Regex,
}

impl IdPattern {
    /// Compiles `source` so that it must match a whole id.
    pub fn new(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("the pattern is empty; leave the key out to accept only ualign's pseudonyms".into());
        }
        let regex = regex::Regex::new(&format!("^(?:{source})$")).map_err(|e| {
            // The regex crate's message spans several lines with a caret under the fault.
            e.to_string().lines().last().unwrap_or("invalid").trim_start_matches("error: ").to_string()
        })?;
        Ok(Self { source: source.to_string(), regex })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub(crate) fn matches(&self, id: &str) -> bool {
        self.regex.is_match(id)
    }
}

impl PartialEq for IdPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Longest participant id ualign accepts from anyone.
pub const MAX_ID_LEN: usize = 64;

impl Study {
    /// Whether a participant may take part under `id`: a ualign pseudonym, or an id the
    /// study's `participant_id_pattern` accepts. Control characters and over-long ids are
    /// never accepted.
    pub fn accepts_participant_id(&self, id: &str) -> bool {
        if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
            return false;
        }
        is_pseudonym(id) || self.options.participant_id_pattern.as_ref().is_some_and(|p| p.matches(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_have_one_shape() {
        for _ in 0..100 {
            assert!(is_pseudonym(&new_pseudonym()));
        }
        for not in ["p-", "p-abc", "p-ABCDEFGHJK", "p-abcdefghj0", "q-abcdefghjk", "p-abcdefghjkm", "AliceSmith1990"] {
            assert!(!is_pseudonym(not), "{not}");
        }
    }

    #[test]
    fn invitation_codes_have_one_form_however_they_are_typed() {
        for _ in 0..100 {
            let c = new_invitation_code();
            assert_eq!(normal_invitation_code(&c).as_deref(), Some(c.as_str()));
            assert_eq!(normal_invitation_code(&c.replace('-', "").to_uppercase()).as_deref(), Some(c.as_str()));
            assert!(!is_pseudonym(&c));
        }
        assert_eq!(normal_invitation_code(" K7Q2 m9xp-4hta "), Some("k7q2-m9xp-4hta".into()));
        for not in ["", "k7q2-m9xp", "k7q2-m9xp-4ht0", "k7q2-m9xp-4htaa", "p-abcdefghjk"] {
            assert!(normal_invitation_code(not).is_none(), "{not}");
        }
        assert_eq!(invitation_hash("k7q2-m9xp-4hta").len(), 64);
    }

    #[test]
    fn a_pattern_matches_whole_ids_only() {
        let prolific = IdPattern::new("[0-9a-f]{24}").unwrap();
        assert!(prolific.matches("5f3e2a1b0c9d8e7f6a5b4c3d"));
        assert!(!prolific.matches("x5f3e2a1b0c9d8e7f6a5b4c3d"));
        assert!(!prolific.matches("5f3e2a1b0c9d8e7f6a5b4c3dx"));
        assert!(!prolific.matches("AliceSmith1990"));
        let either = IdPattern::new("a|b").unwrap();
        assert!(either.matches("a") && either.matches("b") && !either.matches("ab"));
        assert!(IdPattern::new("(unclosed").unwrap_err().contains("unclosed"));
    }
}
