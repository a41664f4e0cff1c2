//! Deterministic test datasets (no files, no network).

/// A tiny deterministic generator (LCG), so datasets are the same on every machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Linear target: `price = 50*area + 10000*rooms - 2000*age + 30000 + noise`.
pub fn houses_csv(rows: usize) -> String {
    let mut rng = Lcg(7);
    let mut csv = String::from("area,rooms,age,price\n");
    for _ in 0..rows {
        let area = 40.0 + 210.0 * rng.next();
        let rooms = 1.0 + (rng.next() * 6.0).floor();
        let age = 60.0 * rng.next();
        let price = 50.0 * area + 10_000.0 * rooms - 2_000.0 * age + 30_000.0 + 3_000.0 * (rng.next() - 0.5);
        csv.push_str(&format!("{area:.2},{rooms},{age:.1},{price:.2}\n"));
    }
    csv
}

/// Binary target: `churned = 0.8*calls - 0.05*tenure + noise > 1`.
pub fn churn_csv(rows: usize) -> String {
    let mut rng = Lcg(11);
    let mut csv = String::from("support_calls,tenure_months,monthly_spend,churned\n");
    for _ in 0..rows {
        let calls = (rng.next() * 9.0).floor();
        let tenure = 1.0 + 71.0 * rng.next();
        let spend = 10.0 + 110.0 * rng.next();
        let churned = u8::from(0.8 * calls - 0.05 * tenure + (rng.next() - 0.5) > 1.0);
        csv.push_str(&format!("{calls},{tenure:.1},{spend:.2},{churned}\n"));
    }
    csv
}

/// Short labelled texts, quoted as CSV: the topic shows in the words used.
pub fn topics_csv(rows: usize) -> String {
    let vocabulary: [(&str, [&str; 5]); 3] = [
        ("billing", ["invoice", "refund", "charged", "payment", "price"]),
        ("delivery", ["parcel", "courier", "shipping", "arrived", "late"]),
        ("account", ["password", "login", "email", "locked", "profile"]),
    ];
    let mut rng = Lcg(5);
    let mut csv = String::from("text,topic\n");
    for i in 0..rows {
        let (topic, words) = &vocabulary[i % 3];
        let mut pick = || words[(rng.next() * 5.0) as usize % 5];
        let text = format!("my {} was {}, please check the {}", pick(), pick(), pick());
        csv.push_str(&format!("\"{text}\",{topic}\n"));
    }
    csv
}
