//! Building ONNX models in memory: a small graph builder over ONNX's protobuf messages
//! (`proto`). Large initializers go to one external data buffer (64-byte aligned), so a
//! model is its graph (small) and its weights (one buffer): ONNX Runtime takes both from
//! memory, and `ualign convert` writes them as `model.onnx` and `model.onnx.data`.

pub(crate) mod proto;

use prost::Message;
use proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto, attr_type,
};

/// The name the graph gives its external data file.
pub(crate) const WEIGHTS_FILE: &str = "model.onnx.data";

/// Initializers at least this large go to the external data buffer.
const EXTERNAL_AT: usize = 1024;

/// A dimension of a graph input or output.
#[derive(Debug, Clone)]
pub(crate) enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// An attribute of a node.
pub(crate) enum Attr {
    Int(i64),
    Float(f32),
}

/// A graph being built.
#[derive(Default)]
pub(crate) struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    weights: Vec<u8>,
    fresh: usize,
}

fn value_info(name: &str, elem: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => Dimension { dim_value: Some(*v), dim_param: None },
            Dim::Named(n) => Dimension { dim_value: None, dim_param: Some(n.to_string()) },
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type: elem, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

impl Graph {
    pub(crate) fn input(&mut self, name: &str, elem: i32, dims: &[Dim]) {
        self.inputs.push(value_info(name, elem, dims));
    }

    pub(crate) fn output(&mut self, name: &str, elem: i32, dims: &[Dim]) {
        self.outputs.push(value_info(name, elem, dims));
    }

    /// A node with named outputs.
    pub(crate) fn node(&mut self, op: &str, domain: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, Attr)>) {
        let attribute = attrs
            .into_iter()
            .map(|(name, a)| {
                let mut p = AttributeProto { name: name.to_string(), ..Default::default() };
                match a {
                    Attr::Int(v) => (p.i, p.r#type) = (Some(v), attr_type::INT),
                    Attr::Float(v) => (p.f, p.r#type) = (Some(v), attr_type::FLOAT),
                }
                p
            })
            .collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            name: format!("n{}", self.nodes.len()),
            op_type: op.to_string(),
            attribute,
            domain: domain.to_string(),
        });
    }

    /// A fresh value name after `hint`.
    pub(crate) fn name(&mut self, hint: &str) -> String {
        self.fresh += 1;
        format!("{hint}_{}", self.fresh)
    }

    /// A node of the default domain with one output, named freshly after `hint`.
    pub(crate) fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>, hint: &str) -> String {
        self.op_in("", op, inputs, attrs, hint)
    }

    /// [`Graph::op`] in `domain` (e.g. `com.microsoft`).
    pub(crate) fn op_in(
        &mut self,
        domain: &str,
        op: &str,
        inputs: &[&str],
        attrs: Vec<(&str, Attr)>,
        hint: &str,
    ) -> String {
        let out = self.name(hint);
        self.node(op, domain, inputs, &[&out], attrs);
        out
    }

    /// An initializer of `dims` with its little-endian bytes.
    pub(crate) fn initializer(&mut self, name: &str, data_type: i32, dims: &[i64], bytes: &[u8]) -> String {
        let mut t = TensorProto { dims: dims.to_vec(), data_type, name: name.to_string(), ..Default::default() };
        if bytes.len() >= EXTERNAL_AT {
            let offset = self.weights.len().div_ceil(64) * 64;
            self.weights.resize(offset, 0);
            self.weights.extend_from_slice(bytes);
            let entry = |k: &str, v: String| StringStringEntryProto { key: k.to_string(), value: v };
            t.external_data = vec![
                entry("location", WEIGHTS_FILE.to_string()),
                entry("offset", offset.to_string()),
                entry("length", bytes.len().to_string()),
            ];
            t.data_location = 1;
        } else {
            t.raw_data = bytes.to_vec();
        }
        self.initializers.push(t);
        name.to_string()
    }

    pub(crate) fn f32s(&mut self, name: &str, dims: &[i64], v: &[f32]) -> String {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializer(name, proto::dtype::FLOAT, dims, &bytes)
    }

    pub(crate) fn i64s(&mut self, name: &str, dims: &[i64], v: &[i64]) -> String {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.initializer(name, proto::dtype::INT64, dims, &bytes)
    }

    pub(crate) fn u8s(&mut self, name: &str, dims: &[i64], v: &[u8]) -> String {
        self.initializer(name, proto::dtype::UINT8, dims, v)
    }

    /// The model: its serialized graph (weights referenced in [`WEIGHTS_FILE`]) and the
    /// weights' bytes.
    pub(crate) fn finish(self, name: &str, metadata: Vec<(String, String)>) -> (Vec<u8>, Vec<u8>) {
        let model = ModelProto {
            ir_version: 10,
            producer_name: "ualign".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: String::new(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: name.to_string(),
                initializer: self.initializers,
                input: self.inputs,
                output: self.outputs,
            }),
            opset_import: vec![
                OperatorSetIdProto { domain: String::new(), version: 17 },
                OperatorSetIdProto { domain: "com.microsoft".into(), version: 1 },
            ],
            metadata_props: metadata.into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect(),
        };
        (model.encode_to_vec(), self.weights)
    }
}
