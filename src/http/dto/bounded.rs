//! Bounded arrays for request bodies.
//!
//! A body is parsed straight into its typed request shape, never into a `serde_json::Value`
//! tree first, so its memory is about its size. What remains is amplification inside the
//! shape: `["","",…]` costs 3 bytes of body per `String` (24 bytes plus its allocation), so a
//! body at `MAX_BODY_BYTES` could become gigabytes. Every array in a request shape is therefore
//! read through one of these functions with a bound the contract can need (WhatsApp's own
//! limits, generously): the parse stops at the first element past it, and the client gets a
//! 400 naming the field (`invalid value for field 'participants': at most 1024 items`).
//! Nesting depth is bounded by serde_json (128 levels); unknown fields are skipped without
//! being kept (`IgnoredAny`).
//!
//! Use: `#[serde(deserialize_with = "bounded::vec::<_, _, 1024>")]` on a `Vec<T>`, or
//! `#[serde(default, deserialize_with = "bounded::opt_vec::<_, _, 1024>")]` on an
//! `Option<Vec<T>>`.

use std::{fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{Error, SeqAccess, Visitor},
};

/// Group participants: WhatsApp's group size limit.
pub const PARTICIPANTS: usize = 1024;
/// Phone numbers or JIDs looked up in one request.
pub const LOOKUPS: usize = 1000;
/// Buttons, rows, sections, cards, poll options of one message.
pub const MESSAGE_PARTS: usize = 100;
/// Event names of a webhook subscription.
pub const EVENTS: usize = 256;
/// Ids in one request (dead letters to replay, newsletter messages, chats to ignore).
pub const IDS: usize = 1000;

struct Bounded<T, const N: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Bounded<T, N> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of at most {N} items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N).min(64));
        while let Some(item) = seq.next_element()? {
            if out.len() == N {
                return Err(A::Error::custom(format_args!("at most {N} items")));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// A `Vec<T>` of at most `N` items.
pub fn vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Bounded::<T, N>(PhantomData))
}

/// An `Option<Vec<T>>` of at most `N` items; `null` is `None`. Pair with `#[serde(default)]`.
pub fn opt_vec<'de, D, T, const N: usize>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Opt<T, const N: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Opt<T, N> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "null or an array of at most {N} items")
        }
        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            vec::<D, T, N>(d).map(Some)
        }
    }
    d.deserialize_option(Opt::<T, N>(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use crate::{error::ApiError, http::extract::parse_json};

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::vec::<_, _, 3>")]
        list: Vec<String>,
        #[serde(default, deserialize_with = "super::opt_vec::<_, _, 2>")]
        maybe: Option<Vec<u32>>,
    }

    fn err(body: &str) -> String {
        match parse_json::<T>(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn arrays_within_the_bound_parse() {
        let t: T = parse_json(br#"{"list":["a","b","c"],"maybe":[1,2]}"#).unwrap();
        assert_eq!((t.list.len(), t.maybe), (3, Some(vec![1, 2])));
        let t: T = parse_json(br#"{"list":[],"maybe":null}"#).unwrap();
        assert_eq!((t.list.len(), t.maybe), (0, None));
        let t: T = parse_json(br#"{"list":[]}"#).unwrap();
        assert_eq!(t.maybe, None);
    }

    #[test]
    fn an_array_past_the_bound_is_refused_naming_the_field() {
        assert_eq!(
            err(r#"{"list":["a","b","c","d"]}"#),
            "invalid value for field 'list': at most 3 items"
        );
        assert_eq!(
            err(r#"{"list":[],"maybe":[1,2,3]}"#),
            "invalid value for field 'maybe': at most 2 items"
        );
        assert!(err(r#"{"list":"a"}"#).contains("'list'"));
    }

    #[test]
    fn the_parse_stops_at_the_first_item_past_the_bound() {
        // The rest is not even valid JSON: the error is about the bound, not the syntax.
        assert_eq!(
            err(r#"{"list":["a","b","c","d", nonsense"#),
            "invalid value for field 'list': at most 3 items"
        );
    }
}
