//! "Did you mean" for unknown names.

/// The defined name closest to `unknown`, if it is close enough to be a likely typo.
pub fn closest<'a>(unknown: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (unknown.chars().count() / 3).max(1);
    let lower = unknown.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = distance(&lower, &c.to_lowercase());
        if d <= limit && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The help line for an unknown name, and the name to put in its place.
pub fn help<'a>(unknown: &str, what: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<(String, String)> {
    closest(unknown, candidates).map(|c| (format!("did you mean the {what} `{c}`?"), c.to_string()))
}

/// Levenshtein distance with adjacent transpositions (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_ignores_strangers() {
        let names = ["frontend", "search", "geo", "mongodb-rate"];
        assert_eq!(closest("frontent", names), Some("frontend"));
        assert_eq!(closest("serach", names), Some("search"));
        assert_eq!(closest("mongodb_rate", names), Some("mongodb-rate"));
        assert_eq!(closest("payments", names), None);
        assert_eq!(closest("ge", names), Some("geo"));
    }
}
