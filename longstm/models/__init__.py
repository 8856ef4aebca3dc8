"""longstm.models"""
