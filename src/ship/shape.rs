//! Output shapes of a shipped record: `native` (as shipped), ECS and OCSF.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Native,
    Ecs,
    Ocsf,
}

impl Shape {
    pub fn parse(s: &str) -> Option<Shape> {
        match s {
            "native" => Some(Shape::Native),
            "ecs" => Some(Shape::Ecs),
            "ocsf" => Some(Shape::Ocsf),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Shape::Native => "native",
            Shape::Ecs => "ecs",
            Shape::Ocsf => "ocsf",
        }
    }
}

/// Appends `line` in `shape` to `out`.
pub fn write(_shape: Shape, line: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(line);
}
