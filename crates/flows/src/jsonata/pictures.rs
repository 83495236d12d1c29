//! Pictures, as XPath 3.1 defines them and JSONata uses them:
//! `$formatInteger(n, '#,##0')`, `$fromMillis(ms, '[Y0001]-[M01]-[D01]')`
//! and reading a time back with `$toMillis(text, picture)`.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const SCALES: [(u64, &str); 4] = [
    (1_000_000_000_000, "trillion"),
    (1_000_000_000, "billion"),
    (1_000_000, "million"),
    (1_000, "thousand"),
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The picture `$fromMillis` writes with when given only a time zone.
pub const ISO: &str = "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]";

/// `$formatInteger`: `n` as `picture` says (`'000'`, `'#,##0'`, `'w'`,
/// `'I'`, `'a'`, with `;o` for ordinals).
pub fn format_integer(n: i64, picture: &str) -> Result<String, String> {
    let (primary, modifier) = match picture.rsplit_once(';') {
        Some((p, m)) if !p.is_empty() => (p, m),
        _ => (picture, ""),
    };
    let ordinal = modifier.starts_with('o');
    integer(n, primary, ordinal)
}

fn integer(n: i64, primary: &str, ordinal: bool) -> Result<String, String> {
    let sign = if n < 0 { "-" } else { "" };
    let m = n.unsigned_abs();
    let body = match primary {
        "" => return Err("D3130: The picture of $formatInteger is empty".into()),
        "w" => words(m, ordinal),
        "W" => words(m, ordinal).to_uppercase(),
        "Ww" => title(&words(m, ordinal)),
        "I" => roman(m)?,
        "i" => roman(m)?.to_lowercase(),
        "A" => letters(m).to_uppercase(),
        "a" => letters(m),
        digits => {
            let text = decimal(m, digits)?;
            match ordinal {
                true => format!("{text}{}", suffix(m)),
                false => text,
            }
        }
    };
    Ok(format!("{sign}{body}"))
}

fn title(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn suffix(n: u64) -> &'static str {
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// A decimal digit pattern: mandatory digits (`0`-`9`), optional ones
/// (`#`) and grouping separators, repeated when they are regular.
fn decimal(n: u64, pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    if !chars.iter().any(|c| c.is_ascii_digit() || *c == '#') {
        return Err(format!("D3130: The picture '{pattern}' has no digit"));
    }
    let mandatory = chars.iter().filter(|c| c.is_ascii_digit()).count().max(1);
    // Separators by their distance from the right, in digits.
    let mut separators: Vec<(usize, char)> = Vec::new();
    let mut digits_right = 0;
    for c in chars.iter().rev() {
        match c {
            '#' | '0'..='9' => digits_right += 1,
            c if c.is_alphanumeric() => {
                return Err(format!(
                    "D3130: '{c}' has no meaning in the picture '{pattern}'"
                ))
            }
            c => separators.push((digits_right, *c)),
        }
    }
    let text = format!("{n:0mandatory$}");
    let regular = separators.first().is_some_and(|(first, c)| {
        *first > 0
            && separators
                .iter()
                .enumerate()
                .all(|(i, (at, s))| s == c && *at == first * (i + 1))
    });
    let mut out: Vec<char> = Vec::new();
    for (i, d) in text.chars().rev().enumerate() {
        if i > 0 {
            let sep = match regular {
                true => {
                    let (every, c) = separators[0];
                    (i % every == 0).then_some(c)
                }
                false => separators.iter().find(|(at, _)| *at == i).map(|(_, c)| *c),
            };
            out.extend(sep);
        }
        out.push(d);
    }
    Ok(out.into_iter().rev().collect())
}

fn words(n: u64, ordinal: bool) -> String {
    let text = cardinal(n);
    if !ordinal {
        return text;
    }
    // The last word becomes its ordinal.
    let (head, last) = match text.rfind([' ', '-']) {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text.as_str()),
    };
    let last = match last {
        "one" => "first".to_string(),
        "two" => "second".into(),
        "three" => "third".into(),
        "five" => "fifth".into(),
        "eight" => "eighth".into(),
        "nine" => "ninth".into(),
        "twelve" => "twelfth".into(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    };
    format!("{head}{last}")
}

fn cardinal(n: u64) -> String {
    if n < 20 {
        return ONES[n as usize].into();
    }
    if n < 100 {
        let (t, o) = (n / 10, n % 10);
        return match o {
            0 => TENS[t as usize].into(),
            _ => format!("{}-{}", TENS[t as usize], ONES[o as usize]),
        };
    }
    if n < 1000 {
        let (h, rest) = (n / 100, n % 100);
        return match rest {
            0 => format!("{} hundred", ONES[h as usize]),
            _ => format!("{} hundred and {}", ONES[h as usize], cardinal(rest)),
        };
    }
    for (scale, name) in SCALES {
        if n >= scale {
            let (high, rest) = (n / scale, n % scale);
            let head = format!("{} {name}", cardinal(high));
            return match rest {
                0 => head,
                r if r < 100 => format!("{head} and {}", cardinal(r)),
                r => format!("{head}, {}", cardinal(r)),
            };
        }
    }
    unreachable!("every n of 1000 or more has a scale")
}

fn roman(n: u64) -> Result<String, String> {
    if n == 0 || n > 3999 {
        return Err(format!("D3130: {n} has no Roman numeral"));
    }
    let mut n = n;
    let mut out = String::new();
    for (v, s) in [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ] {
        while n >= v {
            out.push_str(s);
            n -= v;
        }
    }
    Ok(out)
}

fn letters(n: u64) -> String {
    let mut n = n;
    let mut out = Vec::new();
    while n > 0 {
        n -= 1;
        out.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    out.iter().rev().collect()
}

/// A time zone as `$fromMillis` takes it: `+hhmm`, `-hhmm` or `hhmm`.
pub fn offset(tz: &str) -> Result<UtcOffset, String> {
    let (sign, digits) = match tz.as_bytes().first() {
        Some(b'-') => (-1, &tz[1..]),
        Some(b'+') => (1, &tz[1..]),
        _ => (1, tz),
    };
    let bad = || format!("D3134: The time zone '{tz}' is not ±hhmm");
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let hours: i8 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i8 = digits[2..].parse().map_err(|_| bad())?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| bad())
}

/// One part of a date picture: text as it is, or a `[marker]`.
enum Part {
    Text(String),
    Marker {
        component: char,
        presentation: String,
        ordinal: bool,
        min: Option<usize>,
        max: Option<usize>,
    },
}

fn parts(picture: &str) -> Result<Vec<Part>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = picture.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' if chars.peek() == Some(&'[') => {
                chars.next();
                text.push('[');
            }
            ']' if chars.peek() == Some(&']') => {
                chars.next();
                text.push(']');
            }
            '[' => {
                let mut marker = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(c) if c.is_whitespace() => {}
                        Some(c) => marker.push(c),
                        None => {
                            return Err(format!(
                                "D3135: The picture '{picture}' has a [ without its ]"
                            ))
                        }
                    }
                }
                if !text.is_empty() {
                    out.push(Part::Text(std::mem::take(&mut text)));
                }
                out.push(marker_of(&marker, picture)?);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Part::Text(text));
    }
    Ok(out)
}

fn marker_of(marker: &str, picture: &str) -> Result<Part, String> {
    let mut chars = marker.chars();
    let Some(component) = chars.next().filter(|c| "YMDdFWwXxHhPmsfZzCE".contains(*c)) else {
        return Err(format!(
            "D3132: '[{marker}]' in the picture '{picture}' names no date or time component"
        ));
    };
    let rest: String = chars.collect();
    let (body, width) = match rest.split_once(',') {
        Some((b, w)) => (b.to_string(), Some(w.to_string())),
        None => (rest, None),
    };
    let (min, max) = match &width {
        None => (None, None),
        Some(w) => {
            let (lo, hi) = w.split_once('-').unwrap_or((w, ""));
            let read = |s: &str| s.parse::<usize>().ok();
            (read(lo), read(hi))
        }
    };
    let mut presentation = body;
    let mut ordinal = false;
    let zone = component == 'Z' || component == 'z';
    if !zone
        && presentation.len() > 1
        && (presentation.ends_with('o') || presentation.ends_with('t'))
    {
        ordinal = presentation.ends_with('o');
        presentation.pop();
    }
    if presentation.is_empty() {
        presentation = match component {
            'F' | 'P' => "n",
            'm' | 's' => "01",
            'Z' | 'z' => "01:01",
            _ => "1",
        }
        .into();
    }
    Ok(Part::Marker {
        component,
        presentation,
        ordinal,
        min,
        max,
    })
}

fn named(name: &str, presentation: &str, max: Option<usize>) -> String {
    let name = match max {
        Some(m) => name.chars().take(m).collect(),
        None => name.to_string(),
    };
    match presentation {
        "N" => name.to_uppercase(),
        "n" => name.to_lowercase(),
        _ => name,
    }
}

/// `$fromMillis(ms, picture)` at `zone`.
pub fn format_time(ms: i64, picture: &str, zone: UtcOffset) -> Result<String, String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map_err(|_| format!("D3136: {ms} is out of the range of times"))?
        .to_offset(zone);
    let mut out = String::new();
    for part in parts(picture)? {
        let (component, presentation, ordinal, min, max) = match part {
            Part::Text(s) => {
                out.push_str(&s);
                continue;
            }
            Part::Marker {
                component,
                presentation,
                ordinal,
                min,
                max,
            } => (component, presentation, ordinal, min, max),
        };
        let p = presentation.as_str();
        let value: i64 = match component {
            'Y' => t.year() as i64,
            'M' => t.month() as i64,
            'D' => t.day() as i64,
            'd' => t.ordinal() as i64,
            'F' => t.weekday().number_from_monday() as i64,
            'W' => t.iso_week() as i64,
            'w' => ((t.day() as i64 + first_weekday(&t) - 2) / 7) + 1,
            'X' => t.to_iso_week_date().0 as i64,
            'x' => t.month() as i64,
            'H' => t.hour() as i64,
            'h' => match t.hour() % 12 {
                0 => 12,
                h => h as i64,
            },
            'm' => t.minute() as i64,
            's' => t.second() as i64,
            'f' => t.millisecond() as i64,
            _ => 0,
        };
        let text = match component {
            'P' => named(if t.hour() < 12 { "am" } else { "pm" }, p, max),
            'M' | 'x' if p.starts_with(['N', 'n']) => named(MONTHS[t.month() as usize - 1], p, max),
            'F' if p.starts_with(['N', 'n']) => {
                named(DAYS[t.weekday().number_days_from_monday() as usize], p, max)
            }
            'Z' | 'z' => zone_text(zone, p, component == 'z'),
            'C' => "ISO".into(),
            'E' => "AD".into(),
            'f' => {
                let width = p.chars().filter(|c| c.is_ascii_digit()).count().max(1);
                let digits = format!("{:03}", value);
                let mut d: String = digits.chars().take(width).collect();
                while d.len() < width {
                    d.push('0');
                }
                d
            }
            _ => {
                let mut s = integer(value, p, ordinal)?;
                // A year written with two digits is its last two.
                let two = component == 'Y' && p.chars().filter(|c| c.is_ascii_digit()).count() == 2;
                let keep = if two { Some(2) } else { max };
                if let Some(k) = keep
                    .filter(|k| s.len() > *k && p.chars().all(|c| c.is_ascii_digit() || c == '#'))
                {
                    s = s[s.len() - k..].to_string();
                }
                if let Some(m) =
                    min.filter(|m| s.len() < *m && s.chars().all(|c| c.is_ascii_digit()))
                {
                    s = format!("{}{s}", "0".repeat(m - s.len()));
                }
                s
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}

/// The weekday (1: Monday) of the first of `t`'s month.
fn first_weekday(t: &OffsetDateTime) -> i64 {
    let first = t.date().replace_day(1).unwrap_or(t.date());
    first.weekday().number_from_monday() as i64
}

fn zone_text(zone: UtcOffset, p: &str, gmt: bool) -> String {
    let seconds = zone.whole_seconds();
    if p.ends_with('t') && seconds == 0 {
        return "Z".into();
    }
    let p = p.trim_end_matches('t');
    let sign = if seconds < 0 { '-' } else { '+' };
    let (h, m) = (seconds.abs() / 3600, seconds.abs() % 3600 / 60);
    let body = match p {
        "0101" => format!("{sign}{h:02}{m:02}"),
        "01" => format!("{sign}{h:02}"),
        "1" => format!("{sign}{h}"),
        "1:01" => format!("{sign}{h}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}"),
    };
    match gmt {
        true => format!("GMT{body}"),
        false => body,
    }
}

/// `$toMillis(text, picture)`: the time `text` writes as `picture` says.
/// A date left out is today's; a time left out is midnight.
pub fn parse_time(text: &str, picture: &str, now_ms: i64) -> Result<i64, String> {
    let bad = || format!("D3110: The time '{text}' does not match the picture '{picture}'");
    let parts = parts(picture)?;
    let mut rest = text;
    let mut year = None;
    let mut month = None;
    let mut day = None;
    let mut yday = None;
    let (mut hour, mut minute, mut second, mut milli) = (0u8, 0u8, 0u8, 0u16);
    let mut pm = None;
    let mut zone = UtcOffset::UTC;
    for (i, part) in parts.iter().enumerate() {
        let (component, p, max) = match part {
            Part::Text(s) => {
                rest = rest.strip_prefix(s.as_str()).ok_or_else(bad)?;
                continue;
            }
            Part::Marker {
                component,
                presentation,
                max,
                ..
            } => (*component, presentation.as_str(), *max),
        };
        // Digits run to the next text, or are as many as the pattern has
        // when another marker follows at once.
        let fixed = matches!(parts.get(i + 1), Some(Part::Marker { .. }))
            .then(|| {
                p.chars()
                    .filter(|c| c.is_ascii_digit() || *c == '#')
                    .count()
            })
            .filter(|n| *n > 1);
        if component == 'P' {
            let lower = rest.to_lowercase();
            pm = Some(lower.starts_with("pm") || lower.starts_with("p.m"));
            rest = rest.get(2..).ok_or_else(bad)?;
            continue;
        }
        if component == 'Z' || component == 'z' {
            let r = rest.strip_prefix("GMT").unwrap_or(rest);
            if let Some(after) = r.strip_prefix('Z') {
                rest = after;
                continue;
            }
            let len = r
                .char_indices()
                .skip(1)
                .find(|(_, c)| !(c.is_ascii_digit() || *c == ':'))
                .map_or(r.len(), |(i, _)| i);
            let z = r[..len].replace(':', "");
            let z = if z.len() == 3 {
                format!("{}0{}00", &z[..1], &z[1..])
            } else if z.len() == 5 {
                z
            } else {
                format!("{z}00")
            };
            zone = offset(&z).map_err(|_| bad())?;
            rest = &r[len..];
            continue;
        }
        if (component == 'M' || component == 'F') && p.starts_with(['N', 'n']) {
            let names: &[&str] = if component == 'M' { &MONTHS } else { &DAYS };
            let lower = rest.to_lowercase();
            let found = names.iter().enumerate().find_map(|(k, name)| {
                let name = name.to_lowercase();
                let take = max.unwrap_or(name.len()).min(name.len());
                (lower.starts_with(&name) && max.is_none())
                    .then_some((k, name.len()))
                    .or_else(|| lower.starts_with(&name[..take]).then_some((k, take)))
            });
            let (k, len) = found.ok_or_else(bad)?;
            if component == 'M' {
                month = Some(k as u8 + 1);
            }
            rest = &rest[len..];
            continue;
        }
        let len = rest
            .char_indices()
            .find(|(_, c)| !c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let len = fixed.map_or(len, |f| f.min(len));
        if len == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..len].parse().map_err(|_| bad())?;
        rest = &rest[len..];
        // An ordinal's suffix.
        for s in ["st", "nd", "rd", "th"] {
            if let Some(after) = rest.strip_prefix(s) {
                rest = after;
            }
        }
        let small = |n: i64| u8::try_from(n).map_err(|_| bad());
        match component {
            'Y' => year = Some(i32::try_from(n).map_err(|_| bad())?),
            'M' => month = Some(small(n)?),
            'D' => day = Some(small(n)?),
            'd' => yday = Some(u16::try_from(n).map_err(|_| bad())?),
            'H' | 'h' => hour = small(n)?,
            'm' => minute = small(n)?,
            's' => second = small(n)?,
            'f' => {
                let digits = len as u32;
                let ms = match digits {
                    0..=3 => n * 10i64.pow(3 - digits),
                    _ => n / 10i64.pow(digits - 3),
                };
                milli = u16::try_from(ms).map_err(|_| bad())?;
            }
            _ => {}
        }
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    if let Some(pm) = pm {
        hour = match (pm, hour) {
            (false, 12) => 0,
            (true, h) if h < 12 => h + 12,
            (_, h) => h,
        };
    }
    let today = OffsetDateTime::from_unix_timestamp_nanos(now_ms as i128 * 1_000_000)
        .map_err(|_| bad())?
        .date();
    let date = match (year, month, day, yday) {
        (None, None, None, None) => today,
        (y, _, _, Some(d)) => {
            Date::from_ordinal_date(y.unwrap_or(today.year()), d).map_err(|_| bad())?
        }
        (y, m, d, None) => {
            let m = Month::try_from(m.unwrap_or(1)).map_err(|_| bad())?;
            Date::from_calendar_date(y.unwrap_or(today.year()), m, d.unwrap_or(1))
                .map_err(|_| bad())?
        }
    };
    let time = Time::from_hms_milli(hour, minute, second, milli).map_err(|_| bad())?;
    let at = PrimitiveDateTime::new(date, time).assume_offset(zone);
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_as_pictures_write_them() {
        for (n, picture, want) in [
            (2789, "#,##0", "2,789"),
            (1234567, "#,###", "1,234,567"),
            (7, "000", "007"),
            (12, "w", "twelve"),
            (2345, "w", "two thousand, three hundred and forty-five"),
            (21, "Ww", "Twenty-one"),
            (1999, "I", "MCMXCIX"),
            (4, "i", "iv"),
            (28, "a", "ab"),
            (1, "w;o", "first"),
            (22, "0;o", "22nd"),
            (11, "1;o", "11th"),
            (-5, "00", "-05"),
        ] {
            assert_eq!(format_integer(n, picture).unwrap(), want, "{n} {picture}");
        }
        assert!(format_integer(1, "x").is_err());
        assert!(format_integer(5000, "I").is_err());
    }

    #[test]
    fn times_as_pictures_write_and_read_them() {
        // 2018-07-14T16:30:45.678Z, a Saturday.
        let ms = 1_531_585_845_678;
        for (picture, zone, want) in [
            (ISO, "0000", "2018-07-14T16:30:45.678Z"),
            (ISO, "-0500", "2018-07-14T11:30:45.678-05:00"),
            (
                "[M01]/[D01]/[Y0001] [h#1]:[m01][P]",
                "0000",
                "07/14/2018 4:30pm",
            ),
            ("[FNn], [D1o] [MNn] [Y]", "0000", "Saturday, 14th July 2018"),
            ("[D01] [MNn,3-3] [Y01]", "0000", "14 Jul 18"),
            ("[Y]-[d]", "0000", "2018-195"),
            ("[H01]:[m01] [z]", "+0130", "18:00 GMT+01:30"),
            ("[[[Y]]]", "0000", "[2018]"),
        ] {
            let zone = offset(zone).unwrap();
            assert_eq!(format_time(ms, picture, zone).unwrap(), want, "{picture}");
        }
        for (text, picture, want) in [
            ("2018-07-14T16:30:45.678Z", ISO, ms),
            ("2018-07-14T11:30:45.678-05:00", ISO, ms),
            (
                "14 July 2018 4:30:45pm",
                "[D1] [MNn] [Y] [h]:[m]:[s][P]",
                ms - 678,
            ),
            ("20180714", "[Y0001][M01][D01]", 1_531_526_400_000),
            ("14th Jul 2018", "[D1o] [MNn,3-3] [Y]", 1_531_526_400_000),
        ] {
            assert_eq!(parse_time(text, picture, 0).unwrap(), want, "{text}");
        }
        assert_eq!(
            parse_time("13:45", "[H]:[m]", ms).unwrap(),
            1_531_575_900_000
        );
        for (text, picture) in [("2018-13-01", "[Y]-[M]-[D]"), ("x", "[Y]"), ("2018", "[Y")] {
            assert!(parse_time(text, picture, 0).is_err(), "{text}");
        }
        assert!(offset("5").is_err());
    }
}
