//! Calendar double booking: which events of the same resource overlap a
//! candidate's `[start, end)`.
//!
//! The server refuses an overlapping create or change with `409 overlap`
//! (docs/backend/protocol.md, "Records"); this is the same check on the client, so a form
//! can warn before anything is sent. Timestamps are RFC 3339 strings (as the
//! protocol stores them) or epoch milliseconds (as JavaScript `Date` gives
//! them), parsed here without a date library to keep the module small.
//!
//! ```no_run
//! use crm_sync::core::overlap::{find_overlaps, CalendarEvent, Timestamp};
//!
//! let booked = vec![CalendarEvent::new("e1", "room-1", "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z")];
//! let candidate = CalendarEvent::new("e2", "room-1", "2024-05-01T09:30:00+00:00", "2024-05-01T11:00:00Z");
//! let clashes = find_overlaps(&booked, &candidate)?;
//! assert_eq!(clashes.len(), 1);
//! # Ok::<(), crm_sync::core::overlap::OverlapError>(())
//! ```

use serde::{Deserialize, Serialize};

/// A point in time as the app or the server gives it. `Deserialize` reads
/// the value's own type (see [`crate::core::record::FieldValue`] for why
/// not `untagged`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z (a JavaScript `Date.getTime()`).
    Millis(f64),
    /// An RFC 3339 timestamp with `Z` or a numeric offset.
    Text(String),
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("epoch milliseconds or an RFC 3339 string")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Ok(Timestamp::Millis(v))
            }
            #[allow(clippy::cast_precision_loss)] // a JS number is an f64
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp::Millis(v as f64))
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp::Millis(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Ok(Timestamp::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

impl From<&str> for Timestamp {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for Timestamp {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<i64> for Timestamp {
    fn from(ms: i64) -> Self {
        // Exact for every instant JavaScript's Date can hold (|ms| <= 8.64e15).
        Self::Millis(ms as f64)
    }
}

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    ///
    /// # Errors
    ///
    /// [`TimestampError`] when the text is not RFC 3339 or the number is not
    /// a finite instant within JavaScript's `Date` range.
    pub fn to_millis(&self) -> Result<i64, TimestampError> {
        match self {
            Self::Millis(ms) => millis_from_number(*ms),
            Self::Text(text) => parse_rfc3339_ms(text),
        }
    }
}

/// A calendar event as far as double booking cares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalendarEvent {
    /// The event's record id; an event never overlaps itself.
    pub id: String,
    /// What is booked (a room, a person, a car).
    pub resource: String,
    /// Inclusive start.
    pub start: Timestamp,
    /// Exclusive end.
    pub end: Timestamp,
    /// `"cancelled"` events book nothing; anything else does (the exact
    /// word the server checks, so both sides agree on what is booked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl CalendarEvent {
    /// An event with no status (so it books its resource).
    pub fn new(
        id: impl Into<String>,
        resource: impl Into<String>,
        start: impl Into<Timestamp>,
        end: impl Into<Timestamp>,
    ) -> Self {
        Self {
            id: id.into(),
            resource: resource.into(),
            start: start.into(),
            end: end.into(),
            status: None,
        }
    }

    /// Whether the event was cancelled and so books nothing.
    pub fn is_cancelled(&self) -> bool {
        self.status.as_deref() == Some("cancelled")
    }

    /// The event's `[start, end)` in epoch milliseconds.
    ///
    /// # Errors
    ///
    /// [`OverlapError::BadTimestamp`] for a timestamp that does not parse,
    /// [`OverlapError::EndBeforeStart`] when `end < start`.
    pub fn span_ms(&self) -> Result<(i64, i64), OverlapError> {
        let bad = |field: &'static str, error| OverlapError::BadTimestamp {
            event_id: self.id.clone(),
            field,
            error,
        };
        let start = self
            .start
            .to_millis()
            .map_err(|error| bad("start", error))?;
        let end = self.end.to_millis().map_err(|error| bad("end", error))?;
        if end < start {
            return Err(OverlapError::EndBeforeStart {
                event_id: self.id.clone(),
            });
        }
        Ok((start, end))
    }
}

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not of the shape `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
    #[error("not an RFC 3339 timestamp: {0:?}")]
    Malformed(String),
    /// The shape is right but a part is out of range (month 13, Feb 30, hour 24...).
    #[error("date or time out of range: {0:?}")]
    OutOfRange(String),
    /// A number that is NaN, infinite, or beyond JavaScript's `Date` range.
    #[error("not a valid millisecond timestamp")]
    BadNumber,
}

/// Why events could not be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlapError {
    /// An event's start or end does not parse.
    #[error("event {event_id:?}: bad {field}: {error}")]
    BadTimestamp {
        /// The event's id.
        event_id: String,
        /// `"start"` or `"end"`.
        field: &'static str,
        /// What was wrong.
        error: TimestampError,
    },
    /// An event ends before it starts.
    #[error("event {event_id:?} ends before it starts")]
    EndBeforeStart {
        /// The event's id.
        event_id: String,
    },
}

/// The events that double-book the candidate: same resource, not cancelled,
/// not the candidate itself (same id), and `[start, end)` overlapping the
/// candidate's: `start < other.end && other.start < end`, the server's
/// test, so a warning here predicts its `409 overlap`. Events that only
/// touch (one ends when the other starts) do not overlap; a zero-length
/// event strictly inside another does.
///
/// A cancelled candidate books nothing, so it overlaps nothing. Events on
/// other resources and cancelled events are not parsed, so a broken
/// timestamp there does not stop the check.
///
/// # Errors
///
/// [`OverlapError`] when the candidate, or an event that has to be compared
/// with it, has a timestamp that does not parse or ends before it starts.
pub fn find_overlaps<'a>(
    events: &'a [CalendarEvent],
    candidate: &CalendarEvent,
) -> Result<Vec<&'a CalendarEvent>, OverlapError> {
    let (start, end) = candidate.span_ms()?;
    if candidate.is_cancelled() {
        return Ok(Vec::new());
    }
    let mut clashes = Vec::new();
    for event in events {
        if event.id == candidate.id || event.resource != candidate.resource || event.is_cancelled()
        {
            continue;
        }
        let (other_start, other_end) = event.span_ms()?;
        if other_start < end && start < other_end {
            clashes.push(event);
        }
    }
    Ok(clashes)
}

/// Largest |ms| a JavaScript `Date` holds (100 million days).
const MAX_JS_DATE_MS: f64 = 8.64e15;

fn millis_from_number(ms: f64) -> Result<i64, TimestampError> {
    if !ms.is_finite() || ms.abs() > MAX_JS_DATE_MS {
        return Err(TimestampError::BadNumber);
    }
    // In range and finite, so the cast is exact after flooring (as Date does
    // for fractional milliseconds).
    Ok(ms.floor() as i64)
}

/// Parses an RFC 3339 timestamp (`2024-05-01T09:30:00.123+02:00`, `Z`,
/// lower-case `t`/`z` and a space separator accepted) to epoch milliseconds.
/// Fractions beyond milliseconds are truncated.
///
/// # Errors
///
/// [`TimestampError::Malformed`] for a wrong shape,
/// [`TimestampError::OutOfRange`] for an impossible date or time.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, TimestampError> {
    let malformed = || TimestampError::Malformed(text.to_owned());
    let out_of_range = || TimestampError::OutOfRange(text.to_owned());
    let mut cursor = Cursor::new(text.as_bytes());

    let year = cursor.digits(4).ok_or_else(malformed)?;
    cursor.skip_byte(b'-').ok_or_else(malformed)?;
    let month = cursor.digits(2).ok_or_else(malformed)?;
    cursor.skip_byte(b'-').ok_or_else(malformed)?;
    let day = cursor.digits(2).ok_or_else(malformed)?;
    match cursor.next() {
        Some(b'T' | b't' | b' ') => {}
        _ => return Err(malformed()),
    }
    let hour = cursor.digits(2).ok_or_else(malformed)?;
    cursor.skip_byte(b':').ok_or_else(malformed)?;
    let minute = cursor.digits(2).ok_or_else(malformed)?;
    cursor.skip_byte(b':').ok_or_else(malformed)?;
    let second = cursor.digits(2).ok_or_else(malformed)?;

    let mut millis = 0;
    if cursor.peek() == Some(b'.') {
        cursor.next();
        let mut count = 0;
        while let Some(digit) = cursor.peek().filter(u8::is_ascii_digit) {
            cursor.next();
            if count < 3 {
                millis = millis * 10 + i64::from(digit - b'0');
            }
            count += 1;
        }
        if count == 0 {
            return Err(malformed());
        }
        for _ in count..3 {
            millis *= 10;
        }
    }

    let offset_minutes = match cursor.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = cursor.digits(2).ok_or_else(malformed)?;
            cursor.skip_byte(b':').ok_or_else(malformed)?;
            let minutes = cursor.digits(2).ok_or_else(malformed)?;
            if hours > 23 || minutes > 59 {
                return Err(out_of_range());
            }
            let total = hours * 60 + minutes;
            if sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return Err(malformed()),
    };
    if cursor.peek().is_some() {
        return Err(malformed());
    }

    // Second 60 is RFC 3339's leap second; it counts as the next minute's 0.
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(out_of_range());
    }

    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`). Shared with the HTTP-date parser of
/// [`crate::core::retry`].
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days in a month of the proleptic Gregorian calendar (0 for a bad month).
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A byte reader that never indexes out of bounds.
pub(crate) struct Cursor<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes: bytes.iter(),
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.clone().next().copied()
    }

    pub(crate) fn next(&mut self) -> Option<u8> {
        self.bytes.next().copied()
    }

    pub(crate) fn skip_byte(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// Exactly `count` ASCII digits as a number.
    pub(crate) fn digits(&mut self, count: usize) -> Option<i64> {
        let mut value = 0;
        for _ in 0..count {
            let digit = self.next().filter(u8::is_ascii_digit)?;
            value = value * 10 + i64::from(digit - b'0');
        }
        Some(value)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, resource: &str, start: &str, end: &str) -> CalendarEvent {
        CalendarEvent::new(id, resource, start, end)
    }

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Ok(1_500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.123456789Z"), Ok(123));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:00:00-01:00"), Ok(0));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59Z"), Ok(-1_000));
        // Checked against `date -u -d 2024-02-29T12:34:56Z +%s`.
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:34:56Z"),
            Ok(1_709_210_096_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29t12:34:56z"),
            Ok(1_709_210_096_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29 12:34:56Z"),
            Ok(1_709_210_096_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-03-01T00:00:00Z"),
            Ok(951_868_800_000)
        );
    }

    #[test]
    fn refuses_bad_timestamps_without_panicking() {
        for text in [
            "",
            "2024",
            "2024-05-01",
            "2024-05-01T09:00:00",
            "2024-05-01T09:00Z",
            "2024-05-01T09:00:00.Z",
            "2024-05-01T09:00:00+0100",
            "2024-05-01T09:00:00Zjunk",
            "２０２４-05-01T09:00:00Z",
            "2024-05-01X09:00:00Z",
        ] {
            assert!(
                matches!(parse_rfc3339_ms(text), Err(TimestampError::Malformed(_))),
                "{text:?}"
            );
        }
        for text in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T23:60:00Z",
            "2024-05-01T23:00:61Z",
            "2024-05-01T23:00:00+24:00",
        ] {
            assert!(
                matches!(parse_rfc3339_ms(text), Err(TimestampError::OutOfRange(_))),
                "{text:?}"
            );
        }
        assert_eq!(
            Timestamp::Millis(f64::NAN).to_millis(),
            Err(TimestampError::BadNumber)
        );
        assert_eq!(
            Timestamp::Millis(1e300).to_millis(),
            Err(TimestampError::BadNumber)
        );
        assert_eq!(Timestamp::Millis(1.9).to_millis(), Ok(1));
    }

    #[test]
    fn finds_overlaps_on_the_same_resource_only() {
        let events = vec![
            event(
                "a",
                "room-1",
                "2024-05-01T09:00:00Z",
                "2024-05-01T10:00:00Z",
            ),
            event(
                "b",
                "room-2",
                "2024-05-01T09:00:00Z",
                "2024-05-01T10:00:00Z",
            ),
            event(
                "c",
                "room-1",
                "2024-05-01T10:00:00Z",
                "2024-05-01T11:00:00Z",
            ),
            event(
                "d",
                "room-1",
                "2024-05-01T08:00:00Z",
                "2024-05-01T09:00:00Z",
            ),
            CalendarEvent {
                status: Some("cancelled".into()),
                ..event(
                    "e",
                    "room-1",
                    "2024-05-01T09:00:00Z",
                    "2024-05-01T10:00:00Z",
                )
            },
            event(
                "f",
                "room-1",
                "2024-05-01T07:00:00Z",
                "2024-05-01T12:00:00Z",
            ),
        ];
        let candidate = event(
            "x",
            "room-1",
            "2024-05-01T09:30:00Z",
            "2024-05-01T10:00:00Z",
        );
        let ids: Vec<_> = find_overlaps(&events, &candidate)
            .unwrap()
            .into_iter()
            .map(|event| event.id.as_str())
            .collect();
        // c and d only touch the candidate; b is another room; e is cancelled.
        assert_eq!(ids, ["a", "f"]);
    }

    #[test]
    fn an_event_never_overlaps_itself_and_offsets_count() {
        let events = vec![
            event("a", "r", "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z"),
            event(
                "b",
                "r",
                "2024-05-01T11:00:00+02:00",
                "2024-05-01T12:00:00+02:00",
            ),
        ];
        // The candidate is a changed copy of `a`: it must not clash with its old self,
        // but 09:00Z..10:00Z is 11:00+02:00..12:00+02:00, i.e. `b`.
        let candidate = CalendarEvent::new("a", "r", 1_714_554_000_000_i64, "2024-05-01T10:00:00Z");
        let clashes = find_overlaps(&events, &candidate).unwrap();
        assert_eq!(clashes.len(), 1);
        assert_eq!(clashes.first().map(|e| e.id.as_str()), Some("b"));
    }

    #[test]
    fn zero_length_and_cancelled_candidates() {
        let events = vec![event(
            "a",
            "r",
            "2024-05-01T09:00:00Z",
            "2024-05-01T10:00:00Z",
        )];
        let inside = event("x", "r", "2024-05-01T09:30:00Z", "2024-05-01T09:30:00Z");
        assert_eq!(find_overlaps(&events, &inside).unwrap().len(), 1);
        let at_start = event("x", "r", "2024-05-01T09:00:00Z", "2024-05-01T09:00:00Z");
        assert!(find_overlaps(&events, &at_start).unwrap().is_empty());
        let other_status = CalendarEvent {
            status: Some("confirmed".into()),
            ..event("x", "r", "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z")
        };
        assert_eq!(find_overlaps(&events, &other_status).unwrap().len(), 1);
        let cancelled = CalendarEvent {
            status: Some("cancelled".into()),
            ..event("x", "r", "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z")
        };
        assert!(find_overlaps(&events, &cancelled).unwrap().is_empty());
    }

    #[test]
    fn bad_timestamps_are_typed_errors() {
        let events = vec![
            event("bad", "r", "yesterday", "2024-05-01T10:00:00Z"),
            event("other", "elsewhere", "garbage", "garbage"),
        ];
        let candidate = event("x", "r", "2024-05-01T09:00:00Z", "2024-05-01T10:00:00Z");
        assert!(matches!(
            find_overlaps(&events, &candidate),
            Err(OverlapError::BadTimestamp { event_id, field: "start", .. }) if event_id == "bad"
        ));
        // A broken event on another resource does not matter.
        assert!(find_overlaps(events.get(1..).unwrap(), &candidate)
            .unwrap()
            .is_empty());
        let backwards = event("x", "r", "2024-05-01T10:00:00Z", "2024-05-01T09:00:00Z");
        assert_eq!(
            find_overlaps(&[], &backwards),
            Err(OverlapError::EndBeforeStart {
                event_id: "x".into()
            })
        );
    }

    #[test]
    fn deserialises_strings_and_numbers() {
        let candidate: CalendarEvent = serde_json::from_str(
            r#"{"id":"x","resource":"r","start":0,"end":"1970-01-01T00:00:01Z","status":"confirmed"}"#,
        )
        .unwrap();
        assert_eq!(candidate.span_ms(), Ok((0, 1_000)));
        assert!(!candidate.is_cancelled());
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_any_text(text in "\\PC{0,40}") {
            let _ = parse_rfc3339_ms(&text);
        }

        #[test]
        fn utc_and_offset_forms_agree(secs in -62_135_596_800_i64..253_402_300_799, offset in -1439_i64..1440) {
            // Build the same instant as local time at `offset` minutes from UTC.
            let local = secs + offset * 60;
            let days = local.div_euclid(86_400);
            let in_day = local.rem_euclid(86_400);
            let (year, month, day) = civil_from_days(days);
            prop_assume!((0..=9999).contains(&year));
            let sign = if offset < 0 { '-' } else { '+' };
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
                in_day / 3600, in_day / 60 % 60, in_day % 60, offset.abs() / 60, offset.abs() % 60
            );
            prop_assert_eq!(parse_rfc3339_ms(&text), Ok(secs * 1000));
        }

        #[test]
        fn overlap_is_symmetric(a in 0_i64..100, la in 0_i64..50, b in 0_i64..100, lb in 0_i64..50) {
            let x = CalendarEvent::new("x", "r", a, a + la);
            let y = CalendarEvent::new("y", "r", b, b + lb);
            let xy = find_overlaps(std::slice::from_ref(&y), &x).unwrap().len();
            let yx = find_overlaps(std::slice::from_ref(&x), &y).unwrap().len();
            prop_assert_eq!(xy, yx);
            let expected = usize::from(a < b + lb && b < a + la);
            prop_assert_eq!(xy, expected);
        }
    }

    /// Inverse of `days_from_civil`, for the property test only.
    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
}
