"""longstm.train"""
