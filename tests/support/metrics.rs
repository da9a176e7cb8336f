//! Reading the hub's `/metrics` (Prometheus text exposition format).

/// The samples of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `(name, labels as written between the braces, value)`.
    pub samples: Vec<(String, String, f64)>,
}

impl Metrics {
    /// Parses the text format; `#` lines and lines that do not parse are skipped.
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, rest) = match line.find('{') {
                Some(open) => match line[open..].find('}') {
                    Some(close) => (&line[..open + close + 1], &line[open + close + 1..]),
                    None => continue,
                },
                None => match line.split_once(' ') {
                    Some((name, rest)) => (name, rest),
                    None => continue,
                },
            };
            let Some(value) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            samples.push((name.to_owned(), labels.to_owned(), value));
        }
        Metrics { samples }
    }

    /// The sum of every sample of `name` over all its label sets; `None` if it is absent.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for (n, _, v) in &self.samples {
            if n == name {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// Like [`Metrics::sum`], failing the test (listing the names seen) if it is absent.
    pub fn get(&self, name: &str) -> f64 {
        self.sum(name).unwrap_or_else(|| {
            let mut names: Vec<&str> = self.samples.iter().map(|(n, _, _)| n.as_str()).collect();
            names.dedup();
            panic!("metric {name} not in /metrics; present: {names:?}")
        })
    }
}
