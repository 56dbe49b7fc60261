//! French or English, from stopword counts. The ack template and the operator's view need only
//! these two; anything unclear is left to the configured default.

/// Words that are frequent in French and rare in English, sorted (binary search: this runs on
/// every word of every message). Short elisions ("j'", "l'", "qu'") are counted through their
/// letters, since apostrophes split words.
const FR: &[&str] = &[
    "ai",
    "au",
    "aussi",
    "aux",
    "avec",
    "avez",
    "bonjour",
    "bonsoir",
    "c",
    "ce",
    "cette",
    "cordialement",
    "d",
    "dans",
    "de",
    "depuis",
    "des",
    "du",
    "elle",
    "est",
    "et",
    "fait",
    "il",
    "j",
    "je",
    "l",
    "la",
    "le",
    "les",
    "ma",
    "mais",
    "merci",
    "mes",
    "mon",
    "n",
    "ne",
    "nous",
    "ou",
    "pas",
    "peux",
    "plus",
    "pour",
    "pouvez",
    "qu",
    "que",
    "qui",
    "rien",
    "sont",
    "suis",
    "sur",
    "très",
    "un",
    "une",
    "vos",
    "votre",
    "vous",
    "ça",
    "été",
    "être",
];

/// Words that are frequent in English and rare in French, sorted.
const EN: &[&str] = &[
    "and", "any", "are", "be", "but", "can", "cheers", "could", "does", "doesn", "don", "for",
    "from", "has", "have", "hello", "hi", "i", "is", "it", "my", "not", "of", "please", "regards",
    "since", "thank", "thanks", "that", "the", "there", "this", "to", "was", "we", "what", "when",
    "will", "with", "would", "you", "your",
];

use std::borrow::Cow;
use std::sync::LazyLock;

#[derive(Clone, Copy)]
enum Lang {
    Fr,
    En,
}

/// Stopwords packed into integers: comparing words as strings cost more than everything
/// else in parsing a message. Words of up to 8 bytes pack into one u64; longer stopwords
/// ("cordialement") are few and compared as strings.
struct Keys {
    short: Vec<(u64, Lang)>,
    long: Vec<(&'static str, Lang)>,
}

fn pack(word: &str) -> Option<u64> {
    let b = word.as_bytes();
    if b.len() > 8 {
        return None;
    }
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    Some(u64::from_le_bytes(buf))
}

impl Keys {
    fn get(&self, word: &str) -> Option<Lang> {
        match pack(word) {
            Some(k) => self
                .short
                .binary_search_by_key(&k, |&(key, _)| key)
                .ok()
                .map(|i| self.short[i].1),
            None => self.long.iter().find(|(w, _)| *w == word).map(|&(_, l)| l),
        }
    }
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let mut keys = Keys {
        short: Vec::new(),
        long: Vec::new(),
    };
    let all = FR
        .iter()
        .map(|w| (*w, Lang::Fr))
        .chain(EN.iter().map(|w| (*w, Lang::En)));
    for (w, lang) in all {
        match pack(w) {
            Some(k) => keys.short.push((k, lang)),
            None => keys.long.push((w, lang)),
        }
    }
    keys.short.sort_by_key(|&(k, _)| k);
    keys
});

/// Enough evidence to decide: fewer hits than this is "too short".
const MIN_HITS: usize = 2;

/// How much of a long text to read; the language does not change after the first screens.
const MAX_CHARS: usize = 1500;

/// "fr" or "en" when `text` says so clearly, None when it is too short or a tie.
pub fn detect(text: &str) -> Option<&'static str> {
    let mut fr = 0usize;
    let mut en = 0usize;
    let end = text
        .char_indices()
        .nth(MAX_CHARS)
        .map_or(text.len(), |(i, _)| i);
    for raw in text[..end].split(|c: char| !c.is_alphabetic()) {
        // No stopword is longer than this.
        if raw.is_empty() || raw.len() > 16 {
            continue;
        }
        let word: Cow<'_, str> = if raw.bytes().all(|b| b.is_ascii_lowercase()) {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(raw.to_lowercase())
        };
        match KEYS.get(&word) {
            Some(Lang::Fr) => fr += 1,
            Some(Lang::En) => en += 1,
            None => {}
        }
    }
    // A clear majority, not just one more hit: bilingual mail and quoted product names
    // should stay undecided.
    if fr >= MIN_HITS && fr * 2 > en * 3 {
        Some("fr")
    } else if en >= MIN_HITS && en * 2 > fr * 3 {
        Some("en")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn word_lists_are_sorted_for_binary_search() {
        assert!(super::FR.windows(2).all(|w| w[0] < w[1]));
        assert!(super::EN.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn french_request_is_french() {
        assert_eq!(
            detect("Bonjour, je n'arrive pas à me connecter à mon compte. Merci"),
            Some("fr")
        );
    }

    #[test]
    fn english_request_is_english() {
        assert_eq!(
            detect("Hello, I cannot log in to my account since yesterday. Thanks"),
            Some("en")
        );
    }

    #[test]
    fn too_short_or_balanced_text_is_undecided() {
        assert_eq!(detect("Merci"), None);
        assert_eq!(detect("ok"), None);
        assert_eq!(detect(""), None);
        assert_eq!(detect("Bonjour et merci. Hello and thanks."), None);
    }

    #[test]
    fn accented_and_capitalised_words_count() {
        assert_eq!(
            detect("ÇA NE MARCHE PAS DEPUIS LUNDI, C'EST TRÈS GÊNANT"),
            Some("fr")
        );
    }
}
