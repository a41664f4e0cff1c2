//! Request deadlines as gRPC carries them: the `grpc-timeout` header on a call, and
//! Triton's `timeout` request parameter (microseconds) on a message of a stream, where
//! there are no per-message headers.

use std::time::{Duration, Instant};

/// The request parameter that carries a message's remaining time in microseconds, as
/// Triton's clients send it.
pub const TIMEOUT_PARAMETER: &str = "timeout";

/// The duration of a `grpc-timeout` value (`250m`, `3S`, `100u`…), or None when it is
/// malformed.
fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// `timeout` as a `grpc-timeout` value: the finest unit whose count fits the protocol's
/// eight digits, rounded up so a deadline is never made earlier than asked.
pub fn grpc_timeout_value(timeout: Duration) -> http::HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (count, unit) = units
        .iter()
        .map(|&(per, unit)| (nanos.div_ceil(per), unit))
        .find(|&(count, _)| count <= MAX)
        .unwrap_or((MAX, 'H'));
    http::HeaderValue::from_str(&format!("{count}{unit}")).unwrap_or(http::HeaderValue::from_static("99999999H"))
}

type Parameters = std::collections::HashMap<String, modelplane_proto::inference::InferParameter>;

/// The request's `timeout` parameter: None when absent or 0 (no timeout, as in Triton);
/// an error saying what was expected when it is not a non-negative integer.
pub fn timeout_parameter(parameters: &Parameters) -> Result<Option<Duration>, String> {
    use modelplane_proto::inference::infer_parameter::ParameterChoice;
    let Some(parameter) = parameters.get(TIMEOUT_PARAMETER) else { return Ok(None) };
    let micros = match parameter.parameter_choice {
        Some(ParameterChoice::Int64Param(micros)) => u64::try_from(micros).ok(),
        Some(ParameterChoice::Uint64Param(micros)) => Some(micros),
        _ => None,
    };
    match micros {
        Some(0) => Ok(None),
        Some(micros) => Ok(Some(Duration::from_micros(micros))),
        None => Err(format!(
            "parameter {TIMEOUT_PARAMETER:?} must be a non-negative integer of microseconds, got {}",
            describe_parameter(parameter)
        )),
    }
}

/// A request parameter's value as error messages show it, in the protocol's own terms
/// (`int64_param -3`, `string_param "x"`).
pub fn describe_parameter(parameter: &modelplane_proto::inference::InferParameter) -> String {
    use modelplane_proto::inference::infer_parameter::ParameterChoice;
    match &parameter.parameter_choice {
        Some(ParameterChoice::BoolParam(value)) => format!("bool_param {value}"),
        Some(ParameterChoice::Int64Param(value)) => format!("int64_param {value}"),
        Some(ParameterChoice::Uint64Param(value)) => format!("uint64_param {value}"),
        Some(ParameterChoice::DoubleParam(value)) => format!("double_param {value}"),
        Some(ParameterChoice::StringParam(value)) => format!("string_param {value:?}"),
        None => "no value".into(),
    }
}

/// When a call's caller gives up, from its `grpc-timeout` header; None without one (or
/// with a malformed one, which tonic's own server ignores too).
pub fn call_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let timeout = parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)?;
    Instant::now().checked_add(timeout)
}

/// A request's deadline: the sooner of its call's (`call`) and its `timeout` parameter.
pub fn request_deadline(call: Option<Instant>, parameters: &Parameters) -> Result<Option<Instant>, String> {
    let asked = timeout_parameter(parameters)?.and_then(|timeout| Instant::now().checked_add(timeout));
    Ok(match (call, asked) {
        (Some(call), Some(asked)) => Some(call.min(asked)),
        (call, asked) => call.or(asked),
    })
}

/// Sets the `timeout` parameter to `timeout`, rounded up to whole microseconds (at least
/// one, since 0 would mean none).
pub fn set_timeout_parameter(parameters: &mut Parameters, timeout: Duration) {
    use modelplane_proto::inference::{InferParameter, infer_parameter::ParameterChoice};
    let micros = u64::try_from(timeout.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX).max(1);
    let parameter = InferParameter { parameter_choice: Some(ParameterChoice::Uint64Param(micros)) };
    parameters.insert(TIMEOUT_PARAMETER.to_owned(), parameter);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_round_trip_in_the_finest_unit_that_fits() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("12x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(grpc_timeout_value(Duration::from_micros(1500)), "1500000n");
        assert_eq!(grpc_timeout_value(Duration::from_secs(30)), "30000000u");
        assert_eq!(grpc_timeout_value(Duration::from_secs(3600 * 24)), "86400000m");
        assert_eq!(grpc_timeout_value(Duration::from_nanos(1_000_000_001 * 100)), "100001m");
        for timeout in [Duration::from_nanos(7), Duration::from_millis(1234), Duration::from_secs(500_000)] {
            let value = grpc_timeout_value(timeout);
            let parsed = parse_grpc_timeout(value.to_str().expect("ascii")).expect("parses");
            assert!(parsed >= timeout, "{value:?} is shorter than {timeout:?}");
        }
    }

    #[test]
    fn the_timeout_parameter_is_microseconds_and_zero_is_none() {
        use modelplane_proto::inference::{InferParameter, infer_parameter::ParameterChoice};
        let with = |choice| {
            Parameters::from([(TIMEOUT_PARAMETER.to_owned(), InferParameter { parameter_choice: Some(choice) })])
        };
        assert_eq!(timeout_parameter(&Parameters::new()), Ok(None));
        assert_eq!(timeout_parameter(&with(ParameterChoice::Int64Param(0))), Ok(None));
        assert_eq!(timeout_parameter(&with(ParameterChoice::Int64Param(2500))), Ok(Some(Duration::from_micros(2500))));
        assert_eq!(timeout_parameter(&with(ParameterChoice::Uint64Param(7))), Ok(Some(Duration::from_micros(7))));
        let negative = timeout_parameter(&with(ParameterChoice::Int64Param(-1))).expect_err("negative");
        assert!(negative.contains("non-negative integer of microseconds, got int64_param -1"), "{negative}");
        let text = timeout_parameter(&with(ParameterChoice::StringParam("1s".into()))).expect_err("text");
        assert!(text.ends_with("got string_param \"1s\""), "{text}");

        let call = Instant::now() + Duration::from_secs(5);
        assert_eq!(request_deadline(Some(call), &Parameters::new()), Ok(Some(call)));
        let sooner =
            request_deadline(Some(call), &with(ParameterChoice::Int64Param(1000))).expect("valid").expect("set");
        assert!(sooner < call, "the parameter's deadline is sooner and wins");
        assert!(request_deadline(None, &with(ParameterChoice::Int64Param(-3))).is_err());

        let mut parameters = Parameters::new();
        set_timeout_parameter(&mut parameters, Duration::from_nanos(1));
        assert_eq!(timeout_parameter(&parameters), Ok(Some(Duration::from_micros(1))), "never rounded down to none");
        set_timeout_parameter(&mut parameters, Duration::from_millis(40));
        assert_eq!(timeout_parameter(&parameters), Ok(Some(Duration::from_millis(40))));
    }
}
