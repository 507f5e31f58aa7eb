//! Diversity of a policy's pool for one prompt: how many texts are unique, distinct-n
//! (distinct n-grams over all n-grams, whitespace tokens), and the mean pairwise
//! normalised edit distance (Levenshtein over characters / the longer length).

use std::collections::HashSet;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diversity {
    pub policy: String,
    pub(crate) prompt: String,
    pub(crate) samples: usize,
    pub unique_text_ratio: f64,
    pub distinct_1: f64,
    pub distinct_2: f64,
    pub mean_pairwise_edit_distance: f64,
}

fn distinct_n(texts: &[&str], n: usize) -> f64 {
    let mut all = 0usize;
    let mut seen: HashSet<Vec<&str>> = HashSet::new();
    for t in texts {
        let words: Vec<&str> = t.split_whitespace().collect();
        for w in words.windows(n) {
            all += 1;
            seen.insert(w.to_vec());
        }
    }
    if all == 0 { 0.0 } else { seen.len() as f64 / all as f64 }
}

pub fn diversity(policy: &str, prompt: &str, texts: &[&str]) -> Diversity {
    let unique: HashSet<&&str> = texts.iter().collect();
    let mut pairs = 0usize;
    let mut total = 0.0;
    for i in 0..texts.len() {
        for j in i + 1..texts.len() {
            pairs += 1;
            total += 1.0 - strsim::normalized_levenshtein(texts[i], texts[j]);
        }
    }
    Diversity {
        policy: policy.to_string(),
        prompt: prompt.to_string(),
        samples: texts.len(),
        unique_text_ratio: if texts.is_empty() { 0.0 } else { unique.len() as f64 / texts.len() as f64 },
        distinct_1: distinct_n(texts, 1),
        distinct_2: distinct_n(texts, 2),
        mean_pairwise_edit_distance: if pairs == 0 { 0.0 } else { total / pairs as f64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_figures() {
        let d = diversity("p", "q", &["a b c", "a b d", "a b c"]);
        assert!((d.unique_text_ratio - 2.0 / 3.0).abs() < 1e-12);
        // unigrams: 9, distinct {a, b, c, d} = 4; bigrams: 6, distinct {ab, bc, bd} = 3.
        assert!((d.distinct_1 - 4.0 / 9.0).abs() < 1e-12);
        assert!((d.distinct_2 - 0.5).abs() < 1e-12);
        // Pairs: (1,2) one substitution in 5 chars = 0.2; (1,3) 0; (2,3) 0.2 → mean 0.4/3.
        assert!((d.mean_pairwise_edit_distance - 0.4 / 3.0).abs() < 1e-12);
        let same = diversity("g", "q", &["x y", "x y", "x y", "x y"]);
        assert_eq!((same.unique_text_ratio, same.mean_pairwise_edit_distance), (0.25, 0.0));
    }
}
