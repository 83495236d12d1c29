//! Cutting text that came from outside (guest output, error messages,
//! headers, payload previews) to a byte budget. Every cut goes through
//! here, so none lands inside a UTF-8 character: `String::truncate` and
//! slicing at an arbitrary byte panic there, and a guest chooses its bytes.

/// The longest prefix of `s` that fits in `max` bytes and ends on a
/// character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cuts `s` in place to at most `max` bytes, on a character boundary.
pub fn cut_owned(s: &mut String, max: usize) {
    let end = cut(s, max).len();
    s.truncate(end);
}

/// The longest suffix of `s` that fits in `max` bytes and starts on a
/// character boundary.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The longest prefix of raw bytes within `max` that does not end inside
/// a UTF-8 sequence, for bytes that are decoded after the cut (guest
/// output). Bytes that are not UTF-8 at all are cut at `max`.
pub fn cut_bytes(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    // A sequence is at most 4 bytes: look back at most 3 for its lead.
    let mut end = max;
    for back in 1..=3.min(max) {
        let b = bytes[max - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: keep looking for the lead
        }
        let len = match b {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        if len > back {
            end = max - back; // the character at the lead does not fit
        }
        break;
    }
    &bytes[..end]
}

/// `s` for a message: at most `max_chars` characters, debug-quoted, with
/// `...` when it was cut.
pub fn shown(s: &str, max_chars: usize) -> String {
    let end = s.char_indices().nth(max_chars).map_or(s.len(), |(i, _)| i);
    if end < s.len() {
        format!("{:?}...", &s[..end])
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cuts_before_a_character_that_does_not_fit() {
        let s = format!("{}é", "a".repeat(2047));
        assert_eq!(cut(&s, 2048), "a".repeat(2047));
        assert_eq!(cut(&s, 2049), s);
        assert_eq!(tail("éa", 2), "a");
        assert_eq!(cut_bytes("aé".as_bytes(), 2), b"a");
        assert_eq!(cut_bytes("a😀".as_bytes(), 4), b"a");
        assert_eq!(cut_bytes("a😀".as_bytes(), 5), "a😀".as_bytes());
        assert_eq!(shown("héllo", 2), "\"hé\"...");
        assert_eq!(shown("hé", 2), "\"hé\"");
    }

    proptest! {
        #[test]
        fn cuts_are_the_longest_valid_prefix_or_suffix(s in "\\PC*", max in 0usize..64) {
            let c = cut(&s, max);
            prop_assert!(c.len() <= max && s.starts_with(c));
            // Longest: the next character would not have fit.
            if let Some(next) = s[c.len()..].chars().next() {
                prop_assert!(c.len() + next.len_utf8() > max);
            }
            let t = tail(&s, max);
            prop_assert!(t.len() <= max && s.ends_with(t));
            if let Some(prev) = s[..s.len() - t.len()].chars().next_back() {
                prop_assert!(t.len() + prev.len_utf8() > max);
            }
            let mut owned = s.clone();
            cut_owned(&mut owned, max);
            prop_assert_eq!(owned.as_str(), c);
            // On valid UTF-8 the byte cut agrees with the string cut.
            prop_assert_eq!(cut_bytes(s.as_bytes(), max), c.as_bytes());
        }

        #[test]
        fn byte_cuts_never_split_a_valid_character(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..64) {
            let c = cut_bytes(&bytes, max);
            prop_assert!(c.len() <= max && bytes.starts_with(c));
            // What was valid UTF-8 up to the cut stays valid after it.
            let valid_up_to = std::str::from_utf8(&bytes).map_or_else(|e| e.valid_up_to(), str::len);
            if valid_up_to >= max.min(bytes.len()) {
                prop_assert!(std::str::from_utf8(c).is_ok());
            }
        }
    }
}
