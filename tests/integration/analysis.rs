//! Analysis against independent reference implementations (fixtures made by
//! tests/fixtures/analysis/make_fixtures.py, make_confseq_fixture.py and
//! make_agreement_fixture.py): choix's Plackett–Luce MM, pref_voting's maximal lotteries,
//! confseq's betting confidence sequences, the krippendorff package's α and SciPy's
//! Friedman test.

use std::path::Path;

use serde_json::Value;
use ualign_core::analysis::equilibria::{Order, maximal_lottery};
use ualign_core::analysis::ranking::{Top1, mm_top1};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Krippendorff's α of pairwise preferences equals the `krippendorff` package's on the
/// mirrored reliability data, and Kendall's W and its p-value equal SciPy's Friedman test.
#[test]
fn agreement_equals_krippendorff_and_scipy() {
    use ualign_core::analysis::agreement::{PairValues, kendall_w, pairwise_alpha};
    let f = fixture("agreement.json");
    let cases = f["alpha"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for (i, case) in cases.iter().enumerate() {
        let coders: Vec<PairValues> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| ((v[0].as_i64().unwrap(), v[1].as_i64().unwrap()), v[2].as_bool().unwrap()))
                    .collect()
            })
            .collect();
        let (alpha, pairs) = pairwise_alpha(&coders);
        let want = case["alpha"].as_f64().unwrap();
        assert!((alpha.unwrap() - want).abs() < 1e-12, "case {i}: α {alpha:?} against krippendorff's {want}");
        assert_eq!(pairs as u64, case["pairable"].as_u64().unwrap(), "case {i}");
    }
    for (i, case) in f["w"].as_array().unwrap().iter().enumerate() {
        let orders: Vec<Vec<i64>> = case["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect())
            .collect();
        let (w, p) = kendall_w(&orders).unwrap();
        let (want_w, want_p) = (case["w"].as_f64().unwrap(), case["p"].as_f64().unwrap());
        assert!((w - want_w).abs() < 1e-12, "case {i}: W {w} against {want_w}");
        assert!((p - want_p).abs() < 1e-9 * want_p.max(1e-300) + 1e-14, "case {i}: p {p} against {want_p}");
    }
}

/// The betting confidence sequence equals the authors' `confseq.betting.betting_cs`
/// (running intersection) at every time of every case, both alphas, to 1e-12.
#[test]
fn betting_confidence_sequences_equal_confseq() {
    use ualign_core::analysis::confseq::betting_cs_path;
    let f = fixture("confseq_betting.json");
    let mut total = 0usize;
    for (i, case) in f["cases"].as_array().unwrap().iter().enumerate() {
        let floats =
            |k: &str| -> Vec<f64> { case[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
        let path = betting_cs_path(&floats("x"), case["alpha"].as_f64().unwrap());
        for (t, ((lo, hi), (want_lo, want_hi))) in
            path.iter().zip(floats("low").into_iter().zip(floats("high"))).enumerate()
        {
            total += 1;
            let d = (lo - want_lo).abs().max((hi - want_hi).abs());
            assert!(d < 1e-12, "case {i}, t = {t}: ({lo}, {hi}) against confseq's ({want_lo}, {want_hi})");
        }
        assert_eq!(path.len(), case["x"].as_array().unwrap().len());
        total += path.len();
    }
    assert!(total > 1000, "{total} bounds compared");
}

#[test]
fn plackett_luce_mm_equals_choix() {
    for (i, case) in fixture("choix_mm_top1.json").as_array().unwrap().iter().enumerate() {
        let n = case["n"].as_u64().unwrap() as usize;
        let data: Vec<Top1> = case["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Top1 {
                winner: d["winner"].as_u64().unwrap() as usize,
                losers: d["losers"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect(),
            })
            .collect();
        let got = mm_top1(n, &data, case["alpha"].as_f64().unwrap(), 100_000, 1e-10).unwrap();
        for (g, w) in got.iter().zip(case["params"].as_array().unwrap()) {
            assert!((g - w.as_f64().unwrap()).abs() < 1e-6, "case {i}: {got:?} vs {}", case["params"]);
        }
    }
}

#[test]
fn maximal_lotteries_equal_pref_voting() {
    for (i, case) in fixture("pref_voting_maximal_lottery.json").as_array().unwrap().iter().enumerate() {
        let n = case["n"].as_u64().unwrap() as usize;
        let orders: Vec<Order> = serde_json::from_value(case["orders"].clone()).unwrap();
        let got = maximal_lottery(&orders, n).unwrap();
        for (g, w) in got.iter().zip(case["lottery"].as_array().unwrap()) {
            assert!((g - w.as_f64().unwrap()).abs() < 1e-7, "case {i}: {got:?} vs {}", case["lottery"]);
        }
    }
}

/// A report computed from records made by hand, with no database: f(k) counts follow the
/// answers, identical texts split the win, and a participant's full orders give their
/// ranking and the counterfactual rows.
#[test]
fn a_report_from_records_needs_no_database() {
    use ualign_core::analysis::report::{Options, PersonLine, Records, Report};
    use ualign_core::schedule::SlotRole;
    use ualign_core::store::{BestOfKAnswer, Candidate, Progress, QualityCounts, RankAnswer};

    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("studies/example.toml")).unwrap();
    let (s, diags) =
        ualign_core::study::parse_study(&Path::new(env!("CARGO_MANIFEST_DIR")).join("studies/example.toml"), &text);
    assert!(!diags.has_errors());
    let s = s.unwrap();
    let cand = |id: i64, policy: &str, sample: u32, text: &str| Candidate {
        id,
        policy: policy.into(),
        prompt_id: "cafe".into(),
        sample_index: sample,
        text: text.into(),
        cut: false,
    };
    let candidates =
        vec![cand(1, "sampled", 0, "Bay Brew"), cand(2, "sampled", 1, "Bean There"), cand(3, "greedy", 0, "Bay Brew")];
    let k1 = |who: &str, ids: Vec<i64>, choice| BestOfKAnswer {
        participant: who.into(),
        prompt_id: "cafe".into(),
        policy_a: "sampled".into(),
        policy_b: "greedy".into(),
        k: 1,
        roles: vec![SlotRole::A, SlotRole::B],
        candidate_ids: ids,
        choice,
        no_preference: choice.is_none(),
    };
    let best_of_k = vec![
        k1("a", vec![2, 3], Some(0)), // A's distinct text: 1
        k1("a", vec![2, 3], Some(1)), // B's: 0
        k1("b", vec![1, 3], Some(0)), // the same text in both slots: 1/2
        k1("b", vec![2, 3], None),    // no preference: 1/2
    ];
    let rank_answers = vec![RankAnswer {
        participant: "a".into(),
        prompt: "cafe".into(),
        shown: vec![2, 1, 3],
        choice: Some(0),
        ordering: Some(vec![0, 1, 2]),
    }];
    let records = Records {
        candidates,
        best_of_k,
        rank_answers,
        finished: vec![],
        quality: QualityCounts::default(),
        progress: Progress { participants: 2, completed: 0, answered: 5, trials: 22 },
    };
    let mut rankings = Vec::new();
    let mut keep = |line: PersonLine<'_>| {
        if let PersonLine::Ranking(r) = line {
            rankings.push(r.clone());
        }
    };
    let opts = Options { replicates: 50, worth_replicates: 5, ..Options::for_study(&s) };
    let r = Report::from_records_with(&s, &records, &opts, Some(&mut keep));
    let row = &r.fk[0];
    assert_eq!((row.k, row.n, row.wins, row.ties, row.losses, row.participants), (1, 4, 1, 2, 1, 2));
    assert!((row.rate - 0.5).abs() < 1e-12);
    assert_eq!(r.rankings.total(), rankings.len(), "counted as handed out");
    let given: Vec<_> = rankings.iter().filter(|k| k.method != "pl_mixture").collect();
    assert_eq!(given.len(), 1);
    assert_eq!(given[0].order, [2, 1], "the order as given, best first, 3 (a copy of 1) as 1");
    assert_eq!(given[0].method, "order");
    // The population model: both participants' choices; identical texts are one response.
    let model = r.population_model.as_ref().expect("a model of the choices");
    assert_eq!(model.participants, 2);
    let mixture: Vec<_> = rankings.iter().filter(|k| k.method == "pl_mixture").collect();
    assert!(mixture.iter().all(|k| k.order.len() == 2 && k.certainty.is_some()), "{mixture:?}");
    assert_eq!(r.progress.answered, 5);
}

/// The latent-class model with one class is today's Plackett–Luce fit: on choix's cases
/// fitted with the model's prior (alpha 0.1), its worths equal choix's `mm_top1`.
#[test]
fn a_one_class_mixture_equals_choix() {
    use ualign_core::analysis::mixture::{ALPHA, Evidence, FitOptions, PromptItems, fit};
    use ualign_core::analysis::ranking::Choices;
    let mut checked = 0;
    for (i, case) in fixture("choix_mm_top1.json").as_array().unwrap().iter().enumerate() {
        if case["alpha"].as_f64().unwrap() != ALPHA {
            continue;
        }
        let n = case["n"].as_u64().unwrap() as usize;
        let data = case["data"].as_array().unwrap();
        // Each choice from its own participant, one prompt of n responses.
        let e = Evidence {
            prompts: vec![PromptItems {
                prompt: "p".into(),
                items: (0..n as i64).collect(),
                texts: (0..n).map(|j| format!("response {j}")).collect(),
            }],
            people: (0..data.len()).map(|p| format!("p{p}")).collect(),
            choices: data
                .iter()
                .enumerate()
                .map(|(p, d)| {
                    let ix = |v: &Value| v.as_u64().unwrap() as usize;
                    let rest = d["losers"].as_array().unwrap().iter().map(ix).collect();
                    (p, 0, Choices { ranked: vec![ix(&d["winner"])], rest })
                })
                .collect(),
        };
        let f = fit(&e, 1, &FitOptions { restarts: 2, max_iter: 100_000, tol: 1e-13, seed: 1, ..Default::default() });
        for (g, w) in f.worths[0][0].iter().zip(case["params"].as_array().unwrap()) {
            assert!((g - w.as_f64().unwrap()).abs() < 1e-6, "case {i}: {:?} vs {}", f.worths[0][0], case["params"]);
        }
        checked += 1;
    }
    assert!(checked >= 2, "the fixture has cases with the model's prior");
}
