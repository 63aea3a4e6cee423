"""Names vulture cannot see used (`make deadcode` reads this file beside services/).

Each entry says which framework calls or reads it. Code that only tests call is not listed
here: it is deleted (issue 16).
"""
# ruff: noqa
# fmt: off

# typer calls the CLI's commands and its root callback; typer's help reads a command's __doc__
_root  # typer callback (services/synthtune/cli/main.py:49)
validate  # typer command (services/synthtune/cli/main.py:109)
_.__doc__  # typer help text of the stage commands (services/synthtune/cli/main.py:147)
demo  # typer command (services/synthtune/cli/main.py:251)
serve  # typer command (services/synthtune/cli/main.py:291)
runs_list  # typer command (services/synthtune/cli/main.py:350)
runs_show  # typer command (services/synthtune/cli/main.py:359)
runs_watch  # typer command (services/synthtune/cli/main.py:368)
runs_cancel  # typer command (services/synthtune/cli/main.py:379)
models_push  # typer command (services/synthtune/cli/storecmds.py:65)
models_pull  # typer command (services/synthtune/cli/storecmds.py:81)
models_list  # typer command (services/synthtune/cli/storecmds.py:96)
_.default_flow_style  # ruamel.yaml reads it when dumping (services/synthtune/cli/main.py:242)

# pydantic reads model_config and calls validators; it writes fields to JSON (run.json)
model_config  # pydantic (services/synthtune/controller/config.py:26, controller/runs.py:45, spec/base.py:13)
_._renew_before_expiry  # pydantic validator (services/synthtune/controller/config.py:42)
_._consistent  # pydantic validator (services/synthtune/controller/config.py:123)
started_at  # pydantic field written to run.json (services/synthtune/controller/runs.py:55)
_.started_at  # the same field, set by the executor (services/synthtune/controller/executor.py:311)
_._sets_and_gate_agree  # pydantic validator (services/synthtune/spec/evaluate.py:67)
_._endpoint_given  # pydantic validator (services/synthtune/spec/evaluate.py:77)
_._replicas_of_base_url  # pydantic validator (services/synthtune/spec/generate.py:56)
_._supported_version  # pydantic validator (services/synthtune/spec/pipeline.py:27)
_._sums_to_one  # pydantic validator (services/synthtune/spec/prepare.py:29)
_._group_threshold  # pydantic validator (services/synthtune/spec/prepare.py:36)
_._threshold  # pydantic validator (services/synthtune/spec/prepare.py:50)
_._overlap_below_chunk  # pydantic validator (services/synthtune/spec/prepare.py:101)
_._non_empty_columns  # pydantic validator (services/synthtune/spec/source.py:57)
_._no_lm_head  # pydantic validator (services/synthtune/spec/train.py:25)

# @register puts generation methods in METHODS; the generator looks them up by name
Direct  # registered method (services/synthtune/generator/methods/direct.py:17)
DocumentQA  # registered method (services/synthtune/generator/methods/document_qa.py:13)
EventScenario  # registered method (services/synthtune/generator/methods/event_scenario.py:33)
Evol  # registered method (services/synthtune/generator/methods/evol.py:14)
Persona  # registered method (services/synthtune/generator/methods/persona.py:13)
RecordQA  # registered method (services/synthtune/generator/methods/record_qa.py:11)

# grpc calls interceptor hooks
_.intercept_unary_unary  # grpc client interceptor (services/synthtune/rpc/client.py:43)
_.intercept_unary_stream  # grpc client interceptor (services/synthtune/rpc/client.py:46)
_.intercept_stream_unary  # grpc client interceptor (services/synthtune/rpc/client.py:49)
_.intercept_stream_stream  # grpc client interceptor (services/synthtune/rpc/client.py:52)
_.intercept_service  # grpc server interceptor (services/synthtune/rpc/interceptors.py:72)

# transformers reads tokenizer attributes and calls TrainerCallback hooks with these keywords
_.padding_side  # transformers tokenizer (services/synthtune/llm/transformers_backend.py:34)
_.on_train_begin  # transformers TrainerCallback (services/synthtune/trainer/callbacks.py:41)
_.on_save  # transformers TrainerCallback (services/synthtune/trainer/callbacks.py:67)
control  # TrainerCallback hook keyword (services/synthtune/trainer/callbacks.py:41, 57, 67)
kw  # TrainerCallback hook keywords (services/synthtune/trainer/callbacks.py:41, 57, 67)

# the io.RawIOBase contract of the S3 download stream (io.BufferedReader and TextIOWrapper call these);
# `with` passes __exit__ its arguments
_.readable  # io.RawIOBase contract (services/synthtune/store/s3.py:73)
_.readinto  # io.RawIOBase contract (services/synthtune/store/s3.py:83)
exc_type  # __exit__ argument (services/synthtune/store/artifacts.py:254)
tb  # __exit__ argument (services/synthtune/store/artifacts.py:254)
