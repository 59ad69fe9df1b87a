//! Integers in request bodies, read the way JSON Schema reads them: `5000` and `5000.0` are the
//! same integer. A client that computes a timeout as a float (Python's `json.dumps(5e3)`, a
//! JavaScript division) should not get a 400 for a value the OpenAPI document calls valid.
//! A fraction, a negative number or one out of the field's range is still refused, by name.

use serde::de::Error;
use serde::{Deserialize, Deserializer};

/// For `#[serde(default, deserialize_with = "integral::optional")]` on an `Option<u8|u32|u64>`.
pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = match number.as_u64() {
        Some(n) => n,
        None => match number.as_f64() {
            Some(f) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => f as u64,
            _ => {
                return Err(D::Error::custom(format!(
                    "{number} is not a non-negative integer"
                )));
            }
        },
    };
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{whole} is out of range")))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Body {
        #[serde(default, deserialize_with = "super::optional")]
        n: Option<u8>,
    }

    fn read(text: &str) -> Result<Option<u8>, String> {
        serde_json::from_str::<Body>(text)
            .map(|b| b.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_integers_and_the_rest_is_refused() {
        assert_eq!(read(r#"{"n": 7}"#), Ok(Some(7)));
        assert_eq!(read(r#"{"n": 7.0}"#), Ok(Some(7)));
        assert_eq!(read(r#"{"n": 7e0}"#), Ok(Some(7)));
        assert_eq!(read(r#"{"n": null}"#), Ok(None));
        assert_eq!(read("{}"), Ok(None));
        assert!(
            read(r#"{"n": 7.5}"#)
                .unwrap_err()
                .contains("not a non-negative integer")
        );
        assert!(
            read(r#"{"n": -1}"#)
                .unwrap_err()
                .contains("not a non-negative integer")
        );
        assert!(read(r#"{"n": 256}"#).unwrap_err().contains("out of range"));
        assert!(read(r#"{"n": "7"}"#).is_err());
    }
}
