//! Model building, bad input, compression-aware cost, and the Hugging Face config reader.

use greenai::flops::{
    zoo, Activation, Comparison, Compression, Conv, Layer, Linear, Model, Precision, Sparsity,
};

fn msg<T: std::fmt::Debug>(r: greenai::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn bad_shapes_name_the_layer() {
    let mut m = Model::new("m", &[1, 3, 8, 8]).unwrap();
    m.add("conv1", Layer::Conv(Conv::d2(3, 8, 3))).unwrap();
    let e = msg(m.add("conv2", Layer::Conv(Conv::d2(4, 8, 3))));
    assert!(e.contains("conv2") && e.contains("in_channels"), "{e}");
    let e = msg(m.add("big", Layer::Conv(Conv::d2(8, 8, 9))));
    assert!(e.contains("big") && e.contains("larger than padded input"), "{e}");
    let e = msg(m.add("grp", Layer::Conv(Conv::d2(8, 6, 3).groups(4))));
    assert!(e.contains("grp") && e.contains("groups"), "{e}");
    let e = msg(m.add("zero", Layer::Conv(Conv::d2(8, 0, 1))));
    assert!(e.contains("zero") && e.contains("out_channels"), "{e}");
    let e = msg(m.add("fc", Layer::Linear(Linear::new(10, 2))));
    assert!(e.contains("fc") && e.contains("in_features"), "{e}");
    let e = msg(m.add_from("res", Layer::Add, &["input", "conv1"]));
    assert!(e.contains("res") && e.contains("differ"), "{e}");
    let e = msg(m.add_from("ghost", Layer::Add, &["nowhere", "conv1"]));
    assert!(e.contains("nowhere"), "{e}");
    let e = msg(m.add("conv1", Layer::Activation(Activation::Relu)));
    assert!(e.contains("already used"), "{e}");
    assert!(Model::new("m", &[1, 0, 3]).is_err());
    assert!(Model::new("m", &[]).is_err());
}

#[test]
fn compression_changes_macs_params_and_bytes_by_the_stated_rules() {
    let mut m = Model::new("mlp", &[4, 64]).unwrap();
    m.add("fc1", Layer::Linear(Linear::new(64, 128).bias(false))).unwrap();
    let dense = m.report(&Compression::default()).unwrap().total;
    assert_eq!((dense.macs, dense.params, dense.weight_bytes), (4 * 64 * 128, 8192, 8192 * 4));
    assert_eq!((dense.act_read_bytes, dense.act_written_bytes), (4 * 64 * 4, 4 * 128 * 4));

    let int8 = m.report(&Compression::dense(Precision::Int8)).unwrap().total;
    assert_eq!((int8.macs, int8.weight_bytes, int8.act_read_bytes), (dense.macs, 8192, 4 * 64));
    let int4 = m.report(&Compression::dense(Precision::Int4)).unwrap().total;
    assert_eq!((int4.weight_bytes, int4.act_read_bytes), (4096, 4 * 64)); // int8 activations
    let half = m.report(&Compression::dense(Precision::BF16)).unwrap().total;
    assert_eq!(half.weight_bytes, 8192 * 2);

    let s = Compression::dense(Precision::F32).with_sparsity(Sparsity::Unstructured(0.75));
    let sp = m.report(&s).unwrap().total;
    assert_eq!((sp.macs, sp.params), (dense.macs / 4, 2048));
    assert_eq!(sp.weight_bytes, 2048 * 4 + 8192 / 8); // values + 1-bit mask

    let nm = Compression::dense(Precision::Int8).with_sparsity(Sparsity::NM { n: 2, m: 4 });
    let nm = m.report(&nm).unwrap().total;
    assert_eq!((nm.macs, nm.params), (dense.macs / 2, 4096));
    assert_eq!(nm.weight_bytes, 4096 * (8 + 2) / 8);

    let lr = m.report(&Compression::default().with_rank(16)).unwrap().total;
    assert_eq!((lr.macs, lr.params), (4 * 16 * (64 + 128), 16 * (64 + 128)));
    // Above the break-even rank (64*128/192 = 42) the factorisation is not applied, and a note says so.
    let r = m.report(&Compression::default().with_rank(50)).unwrap();
    assert_eq!(r.total.macs, dense.macs);
    assert!(r.notes.iter().any(|n| n.contains("break-even")), "{:?}", r.notes);

    let cmp = Comparison::new(&m.report(&Compression::default()).unwrap(), &m.report(&s).unwrap());
    assert_eq!(cmp.macs_ratio, 0.25);
    assert!(cmp.to_string().contains("4.000x"));
    assert!(m.report(&Compression::default().with_sparsity(Sparsity::Unstructured(1.0))).is_err());
    assert!(m.report(&Compression::default().with_sparsity(Sparsity::NM { n: 3, m: 2 })).is_err());
}

#[test]
fn per_layer_plans_and_report_table() {
    let m = zoo::by_name("resnet18", 1, None).unwrap();
    let r = m
        .report_with(
            |name| if name == "fc" { Compression::dense(Precision::Int8) } else { Compression::default() },
        )
        .unwrap();
    let fc = r.rows.iter().find(|row| row.name == "fc").unwrap();
    assert_eq!(fc.cost.weight_bytes, 512 * 1000 + 1000 * 4);
    let text = r.to_string();
    assert!(text.contains("layer4.1.conv2") && text.contains("total") && text.contains("not counted"));
    // Residual adds are present: 8 basic blocks.
    assert_eq!(r.rows.iter().filter(|row| row.kind == "add").count(), 8);
}

#[cfg(feature = "serde")]
mod hf {
    use greenai::flops::{hf_config, zoo, Compression};

    const BERT_BASE: &str = r#"{
      "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": false,
      "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
      "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
      "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
      "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": true, "vocab_size": 30522 }"#;

    #[test]
    fn bert_base_config_at_128() {
        let m = zoo::transformer(&hf_config::parse(BERT_BASE).unwrap(), 1, 128).unwrap();
        let t = m.report(&Compression::default()).unwrap().total;
        assert_eq!(t.params, 109_482_240);
        assert!((t.macs as f64 / 11.17e9 - 1.0).abs() < 0.001, "{}", t.macs);
    }

    #[test]
    fn gpt2_and_llama_configs() {
        let gpt2 = r#"{"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
                      "n_positions": 1024, "n_inner": null, "activation_function": "gelu_new"}"#;
        let m = zoo::transformer(&hf_config::parse(gpt2).unwrap(), 1, 1024).unwrap();
        assert_eq!(m.report(&Compression::default()).unwrap().total.params, 124_439_808);
        // LLaMA-2-7B: 6,738,415,616 parameters (Meta's and Hugging Face's count, untied head).
        let llama = r#"{"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
            "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "vocab_size": 32000,
            "max_position_embeddings": 4096, "hidden_act": "silu", "tie_word_embeddings": false}"#;
        let m = zoo::transformer(&hf_config::parse(llama).unwrap(), 1, 16).unwrap();
        assert_eq!(m.report(&Compression::default()).unwrap().total.params, 6_738_415_616);
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = |s: &str| hf_config::parse(s).unwrap_err().to_string();
        assert!(e(r#"{"model_type": "t5"}"#).contains("model_type"));
        assert!(e(r#"{"hidden_size": 8}"#).contains("model_type"));
        assert!(e(r#"{"model_type": "bert", "hidden_size": 768}"#).contains("num_attention_heads"));
        assert!(e(r#"{"model_type": "bert", "hidden_size": -4, "num_attention_heads": 2}"#)
            .contains("hidden_size"));
        let bad_heads = BERT_BASE.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7");
        assert!(e(&bad_heads).contains("num_attention_heads"));
        let bad_act = BERT_BASE.replace("\"gelu\"", "\"mish\"");
        assert!(e(&bad_act).contains("hidden_act"));
        assert!(e("[1, 2]").contains("config.json"));
        assert!(e("{oops").contains("config.json"));
        let cfg = hf_config::parse(BERT_BASE).unwrap();
        assert!(zoo::transformer(&cfg, 1, 513).unwrap_err().to_string().contains("seq_len"));
    }
}
