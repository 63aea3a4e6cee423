from synthtune.rpc.gen.synthtune.v1 import common_pb2 as _common_pb2
from synthtune.rpc.gen.synthtune.v1 import operations_pb2 as _operations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PrepareRequest(_message.Message):
    __slots__ = ("spec_yaml", "store_uri", "run_id", "base_dir", "spec_key")
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    STORE_URI_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_DIR_FIELD_NUMBER: _ClassVar[int]
    SPEC_KEY_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    store_uri: str
    run_id: str
    base_dir: str
    spec_key: str
    def __init__(self, spec_yaml: _Optional[str] = ..., store_uri: _Optional[str] = ..., run_id: _Optional[str] = ..., base_dir: _Optional[str] = ..., spec_key: _Optional[str] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("spec_yaml", "store_uri", "run_id", "base_dir", "method", "prepared", "spec_key")
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    STORE_URI_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_DIR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    SPEC_KEY_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    store_uri: str
    run_id: str
    base_dir: str
    method: str
    prepared: _common_pb2.ArtifactRef
    spec_key: str
    def __init__(self, spec_yaml: _Optional[str] = ..., store_uri: _Optional[str] = ..., run_id: _Optional[str] = ..., base_dir: _Optional[str] = ..., method: _Optional[str] = ..., prepared: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., spec_key: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("spec_yaml", "store_uri", "run_id", "base_dir", "method", "synthetic", "prepared", "spec_key")
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    STORE_URI_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_DIR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SYNTHETIC_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    SPEC_KEY_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    store_uri: str
    run_id: str
    base_dir: str
    method: str
    synthetic: _common_pb2.ArtifactRef
    prepared: _common_pb2.ArtifactRef
    spec_key: str
    def __init__(self, spec_yaml: _Optional[str] = ..., store_uri: _Optional[str] = ..., run_id: _Optional[str] = ..., base_dir: _Optional[str] = ..., method: _Optional[str] = ..., synthetic: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., prepared: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., spec_key: _Optional[str] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("spec_yaml", "store_uri", "run_id", "base_dir", "prepared", "adapters", "spec_key")
    class AdaptersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ArtifactRef
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ...) -> None: ...
    SPEC_YAML_FIELD_NUMBER: _ClassVar[int]
    STORE_URI_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_DIR_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    ADAPTERS_FIELD_NUMBER: _ClassVar[int]
    SPEC_KEY_FIELD_NUMBER: _ClassVar[int]
    spec_yaml: str
    store_uri: str
    run_id: str
    base_dir: str
    prepared: _common_pb2.ArtifactRef
    adapters: _containers.MessageMap[str, _common_pb2.ArtifactRef]
    spec_key: str
    def __init__(self, spec_yaml: _Optional[str] = ..., store_uri: _Optional[str] = ..., run_id: _Optional[str] = ..., base_dir: _Optional[str] = ..., prepared: _Optional[_Union[_common_pb2.ArtifactRef, _Mapping]] = ..., adapters: _Optional[_Mapping[str, _common_pb2.ArtifactRef]] = ..., spec_key: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("operation",)
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ...) -> None: ...
