"""longstm.bench"""
