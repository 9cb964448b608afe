"""The cloud client: Keystone, Storage (Cinder v3) and Compute (Nova) over HTTP.

It knows HTTP and JSON and nothing of gRPC: it returns frozen dataclasses from
``cloud.models`` and raises the named errors of ``cloud.errors``.
"""
