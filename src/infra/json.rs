//! JSON as JSON Schema reads it.

use serde_json::Value;

/// `2.0` is the integer 2 to JSON Schema, and so to clients generated from
/// our OpenAPI document; serde's integer types refuse it. Whole floats within
/// ±2^53 become integers before a body is read into its type.
pub fn whole_numbers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn whole_floats_are_integers_and_others_stay() {
        let mut v = json!({"length": 6.0, "list": [1.0, 1.5, -3.0], "s": "6.0", "big": 1e300});
        super::whole_numbers(&mut v);
        assert_eq!(
            v,
            json!({"length": 6, "list": [1, 1.5, -3], "s": "6.0", "big": 1e300})
        );
        assert!(v["length"].is_u64());
    }
}
