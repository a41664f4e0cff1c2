//! Hashing text vectorizer: word n-grams hashed into a fixed number of columns with an
//! alternating sign (as scikit-learn's HashingVectorizer), optionally weighted by
//! inverse document frequency, then L2-normalised per row.
//!
//! Tokens are runs of two or more word bytes (ASCII letters and digits, or any non-ASCII
//! byte), lowercased in ASCII. Hashing works on the bytes directly, so a row allocates
//! nothing beyond the output matrix and one reused token buffer per batch.

use ndarray::{Array1, Array2, ArrayViewMut1};

/// Vectorizer settings and the fitted IDF weights.
#[derive(Clone, Debug, PartialEq)]
pub struct HashingVectorizer {
    /// Output columns.
    pub n_features: usize,
    /// Longest word n-gram (1: words only).
    pub ngram_max: usize,
    /// Per-column IDF weights when tf-idf is on.
    pub idf: Option<Array1<f32>>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Byte ranges of the tokens of `text`, into a reused buffer.
fn tokenize(text: &[u8], tokens: &mut Vec<(usize, usize)>) {
    tokens.clear();
    let mut start = None;
    for (i, b) in text.iter().enumerate() {
        match (is_word_byte(*b), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s >= 2 {
                    tokens.push((s, i));
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start
        && text.len() - s >= 2
    {
        tokens.push((s, text.len()));
    }
}

impl HashingVectorizer {
    /// Column and sign of every n-gram of `text`, passed to `visit`.
    fn for_each_ngram(&self, text: &[u8], tokens: &mut Vec<(usize, usize)>, mut visit: impl FnMut(usize, f32)) {
        tokenize(text, tokens);
        for n in 1..=self.ngram_max {
            for window in tokens.windows(n) {
                let mut hash = FNV_OFFSET;
                for (k, (start, end)) in window.iter().enumerate() {
                    if k > 0 {
                        hash = (hash ^ u64::from(b' ')).wrapping_mul(FNV_PRIME);
                    }
                    for b in &text[*start..*end] {
                        hash = (hash ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
                    }
                }
                let column = (hash % self.n_features as u64) as usize;
                let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
                visit(column, sign);
            }
        }
    }

    /// Learns IDF weights from training texts: `ln((1 + n) / (1 + df)) + 1`.
    pub fn fit_idf(&mut self, texts: &[&[u8]]) {
        let mut document_frequency = vec![0u32; self.n_features];
        let mut seen = vec![false; self.n_features];
        let mut tokens = Vec::new();
        for text in texts {
            seen.fill(false);
            self.for_each_ngram(text, &mut tokens, |column, _| seen[column] = true);
            for (df, present) in document_frequency.iter_mut().zip(&seen) {
                *df += u32::from(*present);
            }
        }
        let n = texts.len() as f32;
        self.idf = Some(document_frequency.iter().map(|df| ((1.0 + n) / (1.0 + *df as f32)).ln() + 1.0).collect());
    }

    /// One row per text: hashed counts (signed), IDF-weighted when fitted, L2-normalised.
    pub fn transform(&self, texts: &[&[u8]]) -> Array2<f32> {
        let mut out = Array2::zeros((texts.len(), self.n_features));
        let mut tokens = Vec::new();
        for (text, mut row) in texts.iter().zip(out.rows_mut()) {
            self.for_each_ngram(text, &mut tokens, |column, sign| row[column] += sign);
            if let Some(idf) = &self.idf {
                row *= idf;
            }
            normalise(row);
        }
        out
    }
}

fn normalise(mut row: ArrayViewMut1<'_, f32>) {
    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        row /= norm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_words_same_columns_case_insensitive() {
        let v = HashingVectorizer { n_features: 64, ngram_max: 2, idf: None };
        let x = v.transform(&[b"Great movie", b"great MOVIE!", b"terrible plot"]);
        assert_eq!(x.row(0), x.row(1));
        assert_ne!(x.row(0), x.row(2));
        let norm: f32 = x.row(2).iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn single_letters_are_not_tokens_and_idf_downweights_common_words() {
        let mut tokens = Vec::new();
        tokenize(b"a bc, d  efg", &mut tokens);
        assert_eq!(tokens, vec![(2, 4), (9, 12)]);
        let mut v = HashingVectorizer { n_features: 1024, ngram_max: 1, idf: None };
        v.fit_idf(&[b"the cat", b"the dog", b"the end"]);
        let idf = v.idf.clone().expect("fitted");
        let column = |word: &[u8]| {
            let mut found = 0;
            v.for_each_ngram(word, &mut Vec::new(), |c, _| found = c);
            found
        };
        assert!(idf[column(b"the")] < idf[column(b"cat")]);
    }
}
