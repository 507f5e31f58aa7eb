//! Analysis against independent reference implementations (fixtures made by
//! tests/fixtures/analysis/make_fixtures.py): choix's Plackett–Luce MM and pref_voting's
//! maximal lotteries.

use std::path::Path;

use serde_json::Value;
use ualign::analysis::equilibria::{Order, maximal_lottery};
use ualign::analysis::ranking::{Top1, mm_top1};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/analysis").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
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
