//! The crate's error type.

/// Everything that can go wrong while parsing, printing, compiling or
/// evaluating a policy.
///
/// Parse errors carry the 1-based byte position in the policy text at which
/// the problem was found, so a CLI can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy text is empty or only whitespace.
    #[error("empty policy expression")]
    EmptyExpression,

    /// A token that the grammar does not allow at this point.
    #[error("at position {position}: unexpected {found} (expected {expected})")]
    UnexpectedToken {
        /// 1-based byte position of the token.
        position: usize,
        /// The token, described for humans, e.g. `token ')'`.
        found: String,
        /// What the grammar allows here.
        expected: &'static str,
    },

    /// A character that starts no token of the language.
    #[error("at position {position}: unexpected character {found:?}")]
    UnexpectedChar {
        /// 1-based byte position of the character.
        position: usize,
        /// The character.
        found: char,
    },

    /// A quoted string with no closing quote.
    #[error("at position {position}: string is not terminated (missing closing {quote})")]
    UnterminatedString {
        /// 1-based byte position of the opening quote.
        position: usize,
        /// The quote character that opened the string.
        quote: char,
    },

    /// A name followed by `(` that is not `AND`, `OR` or `OutOf`.
    #[error("at position {position}: unknown gate '{name}' (expected AND, OR or OutOf)")]
    UnknownGate {
        /// 1-based byte position of the name.
        position: usize,
        /// The name as written.
        name: String,
    },

    /// A quoted principal that is not of the form `'MSPID.role'`.
    #[error("at position {position}: invalid principal '{principal}': {reason}")]
    BadPrincipal {
        /// 1-based byte position of the opening quote.
        position: usize,
        /// The principal text, without quotes.
        principal: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A principal whose role part is not one of the known roles.
    #[error(
        "at position {position}: unknown role '{role}' in principal '{principal}' \
         (expected member, admin, client, peer or orderer)"
    )]
    UnknownRole {
        /// 1-based byte position of the opening quote.
        position: usize,
        /// The principal text, without quotes.
        principal: String,
        /// The role part as written.
        role: String,
    },

    /// The first argument of `OutOf` is not an integer.
    #[error("at position {position}: OutOf threshold must be an integer, found {found}")]
    BadThreshold {
        /// 1-based byte position of the argument.
        position: usize,
        /// The argument, described for humans.
        found: String,
    },

    /// The `OutOf` threshold is negative or larger than the rule count plus
    /// one (Fabric allows `n + 1`, a policy that can never be satisfied).
    #[error(
        "at position {position}: OutOf threshold {threshold} is out of range \
         for {rules} rule(s) (allowed 0 to {max})",
        max = rules + 1
    )]
    ThresholdOutOfRange {
        /// 1-based byte position of the threshold.
        position: usize,
        /// The threshold as written.
        threshold: i64,
        /// How many rules follow it.
        rules: usize,
    },

    /// Input continues after a complete policy.
    #[error("at position {position}: unexpected {found} after the end of the policy")]
    TrailingInput {
        /// 1-based byte position of the first extra token.
        position: usize,
        /// The token, described for humans.
        found: String,
    },

    /// Gates nest deeper than the parser allows.
    #[error("at position {position}: policy nests deeper than {max} gates")]
    TooDeep {
        /// 1-based byte position of the gate that went too deep.
        position: usize,
        /// The limit.
        max: usize,
    },

    /// A `SignaturePolicyEnvelope` that cannot be compiled for evaluation.
    #[error("invalid signature policy: {reason}")]
    InvalidEnvelope {
        /// What is wrong with it.
        reason: String,
    },

    /// An envelope that has no form in the policy language (for example a
    /// principal that is not an MSP role).
    #[error("policy cannot be written in the policy language: {reason}")]
    NotExpressible {
        /// Why not.
        reason: String,
    },

    /// An implicit-meta rule text such as `"MAJORITY Admins"` that does not parse.
    #[error("invalid implicit-meta rule '{input}': {reason}")]
    BadImplicitMeta {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Bytes that do not decode as the expected protobuf message.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// Which message was expected.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },

    /// A config policy of a type this crate does not evaluate.
    #[error("policy {path} has unsupported type {policy_type}")]
    UnsupportedPolicyType {
        /// Full path of the policy, e.g. `/Channel/Application/Writers`.
        path: String,
        /// The `Policy.type` value found.
        policy_type: i32,
    },

    /// A config policy entry without a `Policy` message.
    #[error("policy {path} has no policy value")]
    MissingPolicy {
        /// Full path of the policy.
        path: String,
    },

    /// A config policy that failed to compile.
    #[error("policy {path} did not compile: {source}")]
    BadConfigPolicy {
        /// Full path of the policy.
        path: String,
        /// Why it did not compile.
        #[source]
        source: Box<PolicyError>,
    },

    /// The signature set does not satisfy the policy.
    #[error("policy not satisfied: {reason}")]
    NotSatisfied {
        /// What was missing.
        reason: String,
    },
}

impl PolicyError {
    /// A stable, machine-matchable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::EmptyExpression => "POLICY_EMPTY",
            PolicyError::UnexpectedToken { .. }
            | PolicyError::UnexpectedChar { .. }
            | PolicyError::UnterminatedString { .. }
            | PolicyError::TrailingInput { .. }
            | PolicyError::TooDeep { .. } => "POLICY_SYNTAX",
            PolicyError::UnknownGate { .. } => "POLICY_UNKNOWN_GATE",
            PolicyError::BadPrincipal { .. } => "POLICY_BAD_PRINCIPAL",
            PolicyError::UnknownRole { .. } => "POLICY_UNKNOWN_ROLE",
            PolicyError::BadThreshold { .. } | PolicyError::ThresholdOutOfRange { .. } => {
                "POLICY_BAD_THRESHOLD"
            }
            PolicyError::InvalidEnvelope { .. } => "POLICY_INVALID_ENVELOPE",
            PolicyError::NotExpressible { .. } => "POLICY_NOT_EXPRESSIBLE",
            PolicyError::BadImplicitMeta { .. } => "POLICY_BAD_IMPLICIT_META",
            PolicyError::Decode { .. } => "POLICY_DECODE",
            PolicyError::UnsupportedPolicyType { .. } => "POLICY_UNSUPPORTED_TYPE",
            PolicyError::MissingPolicy { .. } => "POLICY_MISSING",
            PolicyError::BadConfigPolicy { .. } => "POLICY_BAD_CONFIG",
            PolicyError::NotSatisfied { .. } => "POLICY_NOT_SATISFIED",
        }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, PolicyError>;
