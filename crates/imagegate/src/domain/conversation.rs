//! A request given as a conversation: earlier turns (the model's own images among them) kept as
//! the client sent them, so an upstream that takes conversations gets it back whole, and one
//! that does not gets the last prompt and every image. Images are the task's stored inputs,
//! named by position.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Model,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Model => "model",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub parts: Vec<TurnPart>,
}

/// Text, or an input image (its position among the task's inputs). `thought` and `signature`
/// are the model's own markers on parts it made, handed back as they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TurnPart {
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        thought: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    Input {
        input: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        thought: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
}

/// A safety threshold for a harm category, passed to upstreams that take them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetySetting {
    pub category: String,
    pub threshold: String,
}
