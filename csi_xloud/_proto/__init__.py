# Generated from proto/csi.proto package marker; stubs made by scripts/gen_proto.py. DO NOT EDIT.
