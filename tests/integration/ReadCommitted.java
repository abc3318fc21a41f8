/*
 * Every record of the given topics as Kafka's own Java consumer reads it
 * with isolation.level=read_committed: from the beginning up to each
 * partition's end offset when it starts (for read_committed, the last
 * stable offset: nothing after an open transaction).  It stops there, where
 * the console consumer can only stop after a silence.
 *
 *   java -cp 'build-kafka/libs/*' ReadCommitted.java BOOTSTRAP TIMEOUT_MS TOPIC...
 *
 * Prints "TOPIC<TAB>KEY|VALUE" per record, each partition in its order;
 * exits 1 if the ends are not reached within TIMEOUT_MS.  Run from source
 * (java's single-file launch) by real_kafka.RealKafka.read_committed.
 */
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ReadCommitted {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("isolation.level", "read_committed");
        props.put("enable.auto.commit", "false");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        long deadline = System.currentTimeMillis() + Long.parseLong(args[1]);
        StringBuilder out = new StringBuilder();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            List<TopicPartition> partitions = new ArrayList<>();
            for (int i = 2; i < args.length; i++) {
                List<PartitionInfo> infos = consumer.partitionsFor(args[i]);
                if (infos == null || infos.isEmpty()) {
                    System.err.println("no topic " + args[i]);
                    System.exit(1);
                }
                for (PartitionInfo info : infos)
                    partitions.add(new TopicPartition(info.topic(), info.partition()));
            }
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            Map<TopicPartition, Long> ends = consumer.endOffsets(partitions);
            while (!reached(consumer, ends)) {
                if (System.currentTimeMillis() > deadline) {
                    System.err.println("not at the end offsets " + ends + " in time");
                    System.exit(1);
                }
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200)))
                    out.append(r.topic()).append('\t').append(r.key()).append('|')
                        .append(r.value()).append('\n');
            }
        }
        System.out.print(out);
    }

    private static boolean reached(KafkaConsumer<String, String> consumer,
                                   Map<TopicPartition, Long> ends) {
        for (Map.Entry<TopicPartition, Long> end : ends.entrySet())
            if (consumer.position(end.getKey()) < end.getValue())
                return false;
        return true;
    }
}
