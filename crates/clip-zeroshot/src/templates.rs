//! Prompt templates and class names as data: OpenAI's ImageNet (80 and the 7-template subset) and CIFAR
//! (18) templates, and the ImageNet-1k, CIFAR-10 and CIFAR-100 class names (OpenAI's cleaned names).

use std::path::Path;

use crate::ZeroShotError;

static IMAGENET_TEMPLATES: &str = include_str!("../data/imagenet_templates.txt");
static SIMPLE_TEMPLATES: &str = include_str!("../data/imagenet_templates_simple.txt");
static CIFAR_TEMPLATES: &str = include_str!("../data/cifar_templates.txt");
static IMAGENET_CLASSES: &str = include_str!("../data/imagenet_classes.txt");
static CIFAR10_CLASSES: &str = include_str!("../data/cifar10_classes.txt");
static CIFAR100_CLASSES: &str = include_str!("../data/cifar100_classes.txt");

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// OpenAI's 1000 ImageNet class names, in label order.
pub fn imagenet_classes() -> Vec<String> {
    lines(IMAGENET_CLASSES)
}

/// The 10 CIFAR-10 class names, in label order.
pub fn cifar10_classes() -> Vec<String> {
    lines(CIFAR10_CLASSES)
}

/// The 100 CIFAR-100 class names (OpenAI's cleaned versions), in label order.
pub fn cifar100_classes() -> Vec<String> {
    lines(CIFAR100_CLASSES)
}

/// A set of prompt templates; each holds the class marker `{}` exactly once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Templates {
    /// `imagenet`, `simple`, `cifar`, `none`, or the origin (file path or name) of parsed templates.
    pub name: String,
    /// The templates, each with `{}` where the class name goes.
    pub templates: Vec<String>,
}

impl Templates {
    /// OpenAI's 80 ImageNet templates.
    pub fn imagenet() -> Self {
        Self::builtin("imagenet", IMAGENET_TEMPLATES)
    }

    /// OpenAI's 7-template subset ("itap of a {}.", …).
    pub fn simple() -> Self {
        Self::builtin("simple", SIMPLE_TEMPLATES)
    }

    /// The 18 CIFAR templates of OpenAI's prompts.md.
    pub fn cifar() -> Self {
        Self::builtin("cifar", CIFAR_TEMPLATES)
    }

    /// The bare class name is the prompt.
    pub fn none() -> Self {
        Self {
            name: "none".into(),
            templates: vec!["{}".into()],
        }
    }

    fn builtin(name: &str, text: &str) -> Self {
        Self {
            name: name.into(),
            templates: lines(text),
        }
    }

    /// `imagenet`, `simple`, `cifar`, `none`, or a file with one template per line.
    pub fn from_name_or_file(spec: &str) -> Result<Self, ZeroShotError> {
        match spec {
            "imagenet" => Ok(Self::imagenet()),
            "simple" => Ok(Self::simple()),
            "cifar" => Ok(Self::cifar()),
            "none" => Ok(Self::none()),
            path => Self::from_file(path),
        }
    }

    /// One template per line; `{}` or `{c}` marks the class. Blank lines are skipped.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ZeroShotError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ZeroShotError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses templates from text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ZeroShotError> {
        let mut templates = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let t = line.replace("{c}", "{}");
            if t.matches("{}").count() != 1 {
                return Err(ZeroShotError::Template {
                    origin: origin.to_string(),
                    line: i + 1,
                    text: line.to_string(),
                });
            }
            templates.push(t);
        }
        if templates.is_empty() {
            return Err(ZeroShotError::NoTemplates(origin.to_string()));
        }
        Ok(Self {
            name: origin.to_string(),
            templates,
        })
    }

    /// Every template filled with `class`.
    pub fn fill(&self, class: &str) -> Vec<String> {
        self.templates
            .iter()
            .map(|t| t.replacen("{}", class, 1))
            .collect()
    }
}

/// There must be labels, and none blank. A label may repeat: a class is its position, as in open_clip
/// and OpenAI's notebooks, and two of OpenAI's ImageNet class names ("missile", "sunglasses") name two
/// classes each; the repeated classes get the same column.
pub fn check_labels(labels: &[String]) -> Result<(), ZeroShotError> {
    if labels.is_empty() {
        return Err(ZeroShotError::NoLabels);
    }
    if labels.iter().any(|label| label.trim().is_empty()) {
        return Err(ZeroShotError::EmptyLabel);
    }
    Ok(())
}
