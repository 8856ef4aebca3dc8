"""longstm.data"""
